//! Regenerate a bundle's `MODEL_CARD.md` (and refresh `card.json`'s parameter count and reproduce
//! command; the default limitations when the card has none) without retraining:
//! `cargo run --example model_card -- models/lung-unet "cxrlens train --model lung …"`.

use burn::module::Module;
use burn::prelude::*;
use cxrlens::ml::bundle::{BundleInfo, LoadedModel, default_limitations, load_bundle};

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .ok_or("usage: model_card DIR [COMMAND] [DATA_FOLDER]")?,
    );
    let command = args.next();
    let data_folder = args.next().unwrap_or_else(|| "the training data".into());
    let info = BundleInfo::open(&dir, true).map_err(|e| e.to_string())?;
    let mut card = info.card.clone();
    card.parameters = match load_bundle(&info, &Device::flex()).map_err(|e| e.to_string())? {
        LoadedModel::Lung(m, _) => m.num_params(),
        LoadedModel::Classifier(m, _) => m.num_params(),
        LoadedModel::Saliency(m, _) => m.num_params(),
    };
    if let Some(c) = command {
        card.command = c;
    }
    if card.limitations.is_empty() {
        card.limitations = default_limitations(card.kind, &data_folder, card.input_size);
    }
    card.write(&dir).map_err(|e| e.to_string())?;
    println!("wrote {}", dir.join("MODEL_CARD.md").display());
    Ok(())
}

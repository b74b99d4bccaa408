//! The network being trained (lung U-Net or classifier), its start (fresh or a bundle) and its description.

use super::*;

#[allow(clippy::large_enum_variant)]
pub(crate) enum Net {
    Lung(crate::ml::lung::LungNet),
    Classifier(crate::ml::classifier::Classifier),
}

impl Net {
    /// (class logits, mask logits if any)
    pub(crate) fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Option<Tensor<4>>) {
        match self {
            Net::Lung(m) => {
                let out = m.forward(x);
                (out.class_logits, Some(out.mask_logits))
            }
            Net::Classifier(m) => (m.forward(x), None),
        }
    }
    pub(crate) fn valid(&self) -> Net {
        match self {
            Net::Lung(m) => Net::Lung(m.valid()),
            Net::Classifier(m) => Net::Classifier(m.valid()),
        }
    }
}

/// The network to start from: the bundle named by `init_from` (kind and classes must match the
/// run), or a fresh initialisation. Returns the options with the bundle's geometry filled in.
pub(crate) fn initial_net(
    options: &TrainOptions,
    class_names: &[String],
    device: &Device,
) -> Result<(Net, TrainOptions), MlError> {
    let mut options = options.clone();
    if let Some(dir) = &options.init_from {
        let info = crate::ml::bundle::BundleInfo::open(dir, false)?;
        if info.card.kind != options.kind {
            return Err(MlError::Config(format!(
                "{} holds a {}, not a {}",
                dir.display(),
                info.card.kind.noun(),
                options.kind.noun()
            )));
        }
        let (net, names, size, base) = match crate::ml::bundle::load_bundle(&info, device)? {
            crate::ml::bundle::LoadedModel::Lung(m, c) => {
                options.architecture =
                    if c.encoder.as_deref() == Some(crate::ml::lung::EFFICIENTNET) {
                        Architecture::EfficientNetLite0
                    } else {
                        Architecture::ResNet
                    };
                (
                    Net::Lung(m.train()),
                    c.class_names,
                    c.input_size,
                    c.base_channels,
                )
            }
            crate::ml::bundle::LoadedModel::Classifier(m, c) => {
                options.architecture = c.architecture();
                let base = match &c {
                    ClassifierConfig::ResNet(r) => r.base_channels,
                    ClassifierConfig::EfficientNetLite0(_) => options.base_channels,
                };
                (
                    Net::Classifier(m.train()),
                    c.class_names().to_vec(),
                    c.input_size(),
                    base,
                )
            }
            crate::ml::bundle::LoadedModel::Saliency(..) => {
                return Err(MlError::Config(
                    "saliency models are trained with the staged saliency recipe".into(),
                ));
            }
        };
        if names != class_names {
            return Err(MlError::Dataset(format!(
                "the starting model {} predicts {names:?} but the dataset's labels are {class_names:?}",
                info.title()
            )));
        }
        if !(options.override_input_size && options.kind == ModelKind::Lung) {
            options.input_size = size;
        }
        options.base_channels = base;
        return Ok((net, options));
    }
    let names = class_names.to_vec();
    let net = match options.kind {
        ModelKind::Lung => {
            let config = lung_config(&options, names);
            let mut model = config.init(device);
            if let Some(weights) = &options.pretrained {
                let backbone =
                    crate::ml::efficientnet::EfficientNetLiteConfig::new(vec!["unused".into()])
                        .with_input_size(options.input_size);
                model = model.with_backbone(crate::ml::efficientnet::import_imagenet(
                    weights, &backbone, device,
                )?);
            }
            Net::Lung(model.train())
        }
        ModelKind::Classifier => {
            let config = classifier_config(&options, names);
            let model = match (&config, &options.pretrained) {
                (ClassifierConfig::EfficientNetLite0(c), Some(weights)) => {
                    crate::ml::classifier::Classifier::EfficientNet(
                        crate::ml::efficientnet::import_imagenet(weights, c, device)?,
                    )
                }
                _ => config.init(device),
            };
            Net::Classifier(model.train())
        }
        ModelKind::Saliency => {
            return Err(MlError::Config(
                "saliency models are trained with the staged saliency recipe".into(),
            ));
        }
    };
    Ok((net, options))
}

/// The trained network in words, for the card.
pub(crate) fn describe_network(options: &TrainOptions, net: &Net) -> String {
    let start = match (&options.pretrained, &options.init_from) {
        (Some(_), _) => "started from ImageNet weights",
        (None, Some(_)) => "fine-tuned from a bundle",
        (None, None) => "trained from a random initialisation",
    };
    match net {
        Net::Lung(_) => {
            let c = lung_config(options, Vec::new());
            let encoder = if c.encoder.as_deref() == Some(crate::ml::lung::EFFICIENTNET) {
                "U-Net on an EfficientNet-Lite0 encoder".to_string()
            } else {
                format!(
                    "U-Net, depth {}, {} base channels",
                    c.depth, c.base_channels
                )
            };
            format!(
                "multi-output lung network: {encoder} (lung mask) + linear class head on the pooled bottleneck, {start}; Grad-CAM target of the head: {}",
                c.target_layer()
            )
        }
        Net::Classifier(_) => {
            let c = classifier_config(options, Vec::new());
            let frozen = if options.frozen_blocks > 0 {
                format!("; stem and {} of 16 blocks frozen", options.frozen_blocks)
            } else {
                String::new()
            };
            format!(
                "{}, {start}{frozen}; Grad-CAM target: {}",
                c.architecture().label(),
                c.target_layer()
            )
        }
    }
}

/// The architecture and geometry of the lung network these options train (`architecture`
/// EfficientNet-Lite0 = the pretrained encoder).
pub(crate) fn lung_config(options: &TrainOptions, class_names: Vec<String>) -> LungNetConfig {
    let config = LungNetConfig::new(class_names)
        .with_input_size(options.input_size)
        .with_base_channels(options.base_channels);
    match options.architecture {
        Architecture::EfficientNetLite0 => {
            config.with_encoder(Some(crate::ml::lung::EFFICIENTNET.into()))
        }
        Architecture::ResNet => config,
    }
}

/// The architecture and geometry of the classifier these options train.
pub(crate) fn classifier_config(
    options: &TrainOptions,
    class_names: Vec<String>,
) -> ClassifierConfig {
    match options.architecture {
        Architecture::ResNet => ClassifierConfig::ResNet(
            crate::ml::resnet::ResNetConfig::new(class_names)
                .with_input_size(options.input_size)
                .with_base_channels(options.base_channels),
        ),
        Architecture::EfficientNetLite0 => ClassifierConfig::EfficientNetLite0(
            crate::ml::efficientnet::EfficientNetLiteConfig::new(class_names)
                .with_input_size(options.input_size),
        ),
    }
}

pub(crate) fn net_ref(net: &Net) -> NetRef<'_> {
    NetRef(net)
}

/// Lets `GradientsParams::from_grads` see whichever module is inside [`Net`].
pub(crate) struct NetRef<'a>(&'a Net);

impl NetRef<'_> {
    pub(crate) fn params(&self, grads: burn::tensor::Gradients) -> GradientsParams {
        match self.0 {
            Net::Lung(m) => GradientsParams::from_grads(grads, m),
            Net::Classifier(m) => m.gradients(grads),
        }
    }
}

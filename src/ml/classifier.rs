//! The chest X-ray classifier, whichever architecture a bundle holds: the small ResNet-style
//! network (`ml::resnet`, trained from scratch) or EfficientNet-Lite0 (`ml::efficientnet`,
//! fine-tuned from ImageNet weights). Everything outside `ml` sees one type with one set of
//! operations; `config.json` names the architecture (`"architecture"`, absent in bundles made
//! before there was a choice, which are ResNets).

use std::path::Path;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::blocks::ReluRule;
use super::bundle::{load_into, save_module};
use super::efficientnet::{EfficientNetLite, EfficientNetLiteConfig};
use super::error::MlError;
use super::explain::Explainable;
use super::resnet::{ResNet, ResNetConfig};

/// Which classifier network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// Three residual stages, trained from scratch (`ml::resnet`).
    #[serde(rename = "resnet")]
    ResNet,
    /// EfficientNet-Lite0, ImageNet-pretrained (`ml::efficientnet`).
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
}

impl Architecture {
    pub const ALL: [Architecture; 2] = [Architecture::ResNet, Architecture::EfficientNetLite0];

    pub fn parse(text: &str) -> Result<Self, MlError> {
        match text {
            "resnet" => Ok(Self::ResNet),
            "efficientnet-lite0" => Ok(Self::EfficientNetLite0),
            other => Err(MlError::Config(format!(
                "unknown classifier architecture {other:?} (resnet, efficientnet-lite0)"
            ))),
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Self::ResNet => "resnet",
            Self::EfficientNetLite0 => "efficientnet-lite0",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::ResNet => "ResNet-style (from scratch)",
            Self::EfficientNetLite0 => "EfficientNet-Lite0 (ImageNet-pretrained)",
        }
    }

    /// The input side a new model of this architecture is trained at by default.
    pub fn default_input_size(self) -> usize {
        match self {
            Self::ResNet => 128,
            Self::EfficientNetLite0 => 224,
        }
    }
}

/// Architecture and geometry of a classifier (`config.json`).
#[derive(Clone, Debug)]
pub enum ClassifierConfig {
    ResNet(ResNetConfig),
    EfficientNetLite0(EfficientNetLiteConfig),
}

impl ClassifierConfig {
    pub fn architecture(&self) -> Architecture {
        match self {
            Self::ResNet(_) => Architecture::ResNet,
            Self::EfficientNetLite0(_) => Architecture::EfficientNetLite0,
        }
    }

    pub fn input_size(&self) -> usize {
        match self {
            Self::ResNet(c) => c.input_size,
            Self::EfficientNetLite0(c) => c.input_size,
        }
    }

    pub fn class_names(&self) -> &[String] {
        match self {
            Self::ResNet(c) => &c.class_names,
            Self::EfficientNetLite0(c) => &c.class_names,
        }
    }

    pub fn set_class_names(&mut self, names: Vec<String>) {
        match self {
            Self::ResNet(c) => c.class_names = names,
            Self::EfficientNetLite0(c) => c.class_names = names,
        }
    }

    /// How many times the network halves its input (the input side must be a multiple of 2^this).
    pub fn downsamplings(&self) -> usize {
        match self {
            Self::ResNet(c) => c.blocks_per_stage.len() + 1,
            Self::EfficientNetLite0(_) => 5,
        }
    }

    /// The Grad-CAM target layer, in words (shown in the Analysis panel).
    pub fn target_layer(&self) -> String {
        let side = match self {
            Self::ResNet(c) => c.feature_size(),
            Self::EfficientNetLite0(c) => c.feature_size(),
        };
        match self {
            Self::ResNet(c) => format!(
                "last residual stage ({} channels, {side}×{side})",
                c.base_channels << c.blocks_per_stage.len().saturating_sub(1)
            ),
            Self::EfficientNetLite0(_) => {
                format!("head convolution conv_head (1280 channels, {side}×{side})")
            }
        }
    }

    /// The same architecture at another input size.
    pub fn with_input_size(self, size: usize) -> Self {
        match self {
            Self::ResNet(c) => Self::ResNet(c.with_input_size(size)),
            Self::EfficientNetLite0(c) => Self::EfficientNetLite0(c.with_input_size(size)),
        }
    }

    /// Channels of the Grad-CAM target layer (what a saliency network fuses).
    pub fn feature_channels(&self) -> usize {
        match self {
            Self::ResNet(c) => c.base_channels << c.blocks_per_stage.len().saturating_sub(1),
            Self::EfficientNetLite0(_) => 1280,
        }
    }

    pub fn init(&self, device: &Device) -> Classifier {
        match self {
            Self::ResNet(c) => Classifier::ResNet(c.init(device)),
            Self::EfficientNetLite0(c) => Classifier::EfficientNet(c.init(device)),
        }
    }
}

impl Serialize for ClassifierConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = match self {
            Self::ResNet(c) => serde_json::to_value(c),
            Self::EfficientNetLite0(c) => serde_json::to_value(c),
        }
        .map_err(serde::ser::Error::custom)?;
        let mut map = match value {
            serde_json::Value::Object(map) => map,
            _ => return Err(serde::ser::Error::custom("config is not an object")),
        };
        map.insert(
            "architecture".into(),
            serde_json::Value::String(self.architecture().id().into()),
        );
        map.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ClassifierConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let architecture = match map.remove("architecture") {
            None => Architecture::ResNet,
            Some(serde_json::Value::String(s)) => {
                Architecture::parse(&s).map_err(serde::de::Error::custom)?
            }
            Some(other) => {
                return Err(serde::de::Error::custom(format!(
                    "architecture {other} is not a string"
                )));
            }
        };
        let value = serde_json::Value::Object(map);
        Ok(match architecture {
            Architecture::ResNet => {
                Self::ResNet(serde_json::from_value(value).map_err(serde::de::Error::custom)?)
            }
            Architecture::EfficientNetLite0 => Self::EfficientNetLite0(
                serde_json::from_value(value).map_err(serde::de::Error::custom)?,
            ),
        })
    }
}

/// A classifier network of either architecture.
// One value per loaded model: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Classifier {
    ResNet(ResNet),
    EfficientNet(EfficientNetLite),
}

/// Applies the same module operation to whichever network the classifier holds.
macro_rules! each {
    ($self:expr, $m:ident => $e:expr) => {
        match $self {
            Classifier::ResNet($m) => Classifier::ResNet($e),
            Classifier::EfficientNet($m) => Classifier::EfficientNet($e),
        }
    };
}

impl Classifier {
    /// `x`: `[B, 1, S, S]` normalised image → `[B, classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Self::ResNet(m) => m.forward(x),
            Self::EfficientNet(m) => m.forward(x),
        }
    }

    /// Activations of the Grad-CAM target layer, `[B, C, h, w]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::ResNet(m) => m.features(x),
            Self::EfficientNet(m) => m.features(x),
        }
    }

    /// Target-layer activations and, from the same pass, the features the out-of-distribution gate
    /// measures (ResNet: the globally pooled target layer; EfficientNet: see
    /// `efficientnet::gate_vector`).
    pub fn features_and_gate(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<2>) {
        match self {
            Self::ResNet(m) => {
                let f = m.features(x);
                let g = super::blocks::global_avg_pool(f.clone());
                (f, g)
            }
            Self::EfficientNet(m) => m.features_and_gate(x),
        }
    }

    /// What [`Self::features_and_gate`] gives the gate, in words.
    pub fn gate_features(&self) -> &'static str {
        match self {
            Self::ResNet(_) => "globally pooled last residual stage",
            Self::EfficientNet(_) => super::efficientnet::GATE_FEATURES,
        }
    }

    /// Inference mode: no gradient to the weights, batch norm on its running statistics.
    pub fn freeze(self) -> Self {
        each!(self, m => m.freeze())
    }

    /// The same network on the inner (non-autodiff) device, in inference mode.
    pub fn valid(&self) -> Self {
        each!(self, m => m.valid())
    }

    /// Training mode (batch statistics, dropout) for the parts that are not frozen.
    pub fn train(self) -> Self {
        each!(self, m => m.train())
    }

    /// Freezes everything but the classification layer.
    pub fn freeze_features(self) -> Self {
        each!(self, m => m.freeze_features())
    }

    pub fn num_params(&self) -> usize {
        match self {
            Self::ResNet(m) => m.num_params(),
            Self::EfficientNet(m) => m.num_params(),
        }
    }

    /// Writes the weights (burnpack), atomically.
    pub fn save(&self, path: &Path) -> Result<(), MlError> {
        match self {
            Self::ResNet(m) => save_module(m.clone(), path),
            Self::EfficientNet(m) => save_module(m.clone(), path),
        }
    }

    /// Loads weights written by [`Self::save`] into this network.
    pub fn load(self, path: &Path) -> Result<Self, MlError> {
        Ok(match self {
            Self::ResNet(m) => Self::ResNet(load_into(m, path)?),
            Self::EfficientNet(m) => Self::EfficientNet(load_into(m, path)?),
        })
    }

    /// Parameter gradients of this network from a backward pass.
    pub fn gradients(&self, grads: burn::tensor::Gradients) -> GradientsParams {
        match self {
            Self::ResNet(m) => GradientsParams::from_grads(grads, m),
            Self::EfficientNet(m) => GradientsParams::from_grads(grads, m),
        }
    }

    /// This network's share of gradients that other modules take from too.
    pub fn gradients_from(&self, grads: &mut burn::tensor::Gradients) -> GradientsParams {
        match self {
            Self::ResNet(m) => GradientsParams::from_module(grads, m),
            Self::EfficientNet(m) => GradientsParams::from_module(grads, m),
        }
    }

    /// One optimiser step.
    pub fn step(self, optimizer: &mut ModuleOptimizer, lr: f64, grads: GradientsParams) -> Self {
        each!(self, m => optimizer.step(lr, m, grads))
    }

    /// Differentiable guided-backpropagation map (the heatmap-generator loss); see
    /// [`ResNet::guided_backprop_map`]. Only the ResNet has the explicit transposes it needs.
    pub fn guided_backprop_map(
        &self,
        x: Tensor<4>,
        classes: &[usize],
    ) -> Result<Tensor<4>, MlError> {
        match self {
            Self::ResNet(m) => Ok(m.guided_backprop_map(x, classes)),
            Self::EfficientNet(_) => Err(MlError::Config(
                "the heatmap-generator loss needs the ResNet classifier (its guided backpropagation is built from explicit transposes); train the staged recipe without it, or start from a ResNet bundle".into(),
            )),
        }
    }
}

impl Explainable for Classifier {
    fn target_features(&self, x: Tensor<4>) -> Tensor<4> {
        self.features(x)
    }

    fn head(&self, features: Tensor<4>) -> Tensor<2> {
        match self {
            Self::ResNet(m) => m.head(features),
            Self::EfficientNet(m) => m.head(features),
        }
    }

    fn backprop_features(&self, x: Tensor<4>, upstream: Tensor<4>, rule: ReluRule) -> Tensor<4> {
        match self {
            Self::ResNet(m) => m.backprop_features(x, upstream, rule),
            Self::EfficientNet(m) => m.backprop_features(x, upstream, rule),
        }
    }
}

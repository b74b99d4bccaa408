//! EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant: no squeeze-excitation, ReLU6, fixed stem
//! and head) as a burn Module + Config pair, and the import of its ImageNet weights from the
//! PyTorch state dict in `shared/pretrained/efficientnet-lite0` through burn's PyTorch store.
//!
//! The network takes the app's one-channel input (`ml::preprocess`, values in [-1, 1], which is
//! the TensorFlow-Lite reference normalisation `(x − 127) / 128` of a grey image): the ImageNet
//! stem's RGB kernels are summed over the three input channels once at import, which is exactly
//! the network applied to the grey image repeated in R, G and B. Convolutions use TensorFlow's
//! "SAME" padding and batch norm ε = 10⁻³, as the weights were trained. The Grad-CAM target is the
//! head convolution's activations (1280 channels, 1/32 of the input side).

use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::relu6;

use super::blocks::{ReluRule, global_avg_pool, vjp};
use super::error::MlError;
use super::explain::Explainable;

/// One stage of the network: (expansion ratio, kernel, stride of its first block, output channels,
/// blocks). EfficientNet-B0's table, which Lite0 keeps (width and depth multipliers 1.0).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;
/// Batch-norm ε of the TensorFlow original (PyTorch's default is 10⁻⁵).
const BN_EPSILON: f64 = 1e-3;
/// Number of inverted-residual blocks (sum of the stages' repeats).
pub const BLOCKS: usize = 16;

/// Architecture of [`EfficientNetLite`]. Stored as `config.json` beside the weights.
#[derive(Config, Debug)]
pub struct EfficientNetLiteConfig {
    /// Square input side in pixels (a multiple of 32); images are resampled to it.
    #[config(default = 224)]
    pub input_size: usize,
    /// Class names, in output order.
    pub class_names: Vec<String>,
    /// Input channels: 1 for the app's grey input, 3 for the ImageNet original.
    #[config(default = 1)]
    pub input_channels: usize,
    /// Dropout before the classification layer during training.
    #[config(default = 0.2)]
    pub dropout: f64,
}

/// Inverted-residual ("MBConv") block without squeeze-excitation: 1×1 expansion → BN → ReLU6 →
/// k×k depthwise (stride) → BN → ReLU6 → 1×1 projection → BN, plus the input when the shape is kept.
#[derive(Module, Debug)]
pub struct MbConv {
    expand_conv: Option<Conv2d>,
    bn0: Option<BatchNorm>,
    depthwise_conv: Conv2d,
    bn1: BatchNorm,
    project_conv: Conv2d,
    bn2: BatchNorm,
    residual: bool,
}

fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(BN_EPSILON)
        // TensorFlow's decay 0.99.
        .with_momentum(0.01)
        .init(device)
}

fn conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Same)
        .with_groups(groups)
        .with_bias(false)
        .init(device)
}

impl MbConv {
    fn new(
        expand: usize,
        kernel: usize,
        stride: usize,
        channels_in: usize,
        channels_out: usize,
        device: &Device,
    ) -> Self {
        let mid = channels_in * expand;
        let (expand_conv, bn0) = if expand == 1 {
            (None, None)
        } else {
            (
                Some(conv([channels_in, mid], 1, 1, 1, device)),
                Some(batch_norm(mid, device)),
            )
        };
        Self {
            expand_conv,
            bn0,
            depthwise_conv: conv([mid, mid], kernel, stride, mid, device),
            bn1: batch_norm(mid, device),
            project_conv: conv([mid, channels_out], 1, 1, 1, device),
            bn2: batch_norm(channels_out, device),
            residual: stride == 1 && channels_in == channels_out,
        }
    }

    /// Pre-activation of the expansion (`None` for the first block, which has none).
    fn expansion(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        match (&self.expand_conv, &self.bn0) {
            (Some(c), Some(bn)) => Some(bn.forward(c.forward(x))),
            _ => None,
        }
    }

    fn depthwise(&self, a0: Tensor<4>) -> Tensor<4> {
        self.bn1.forward(self.depthwise_conv.forward(a0))
    }

    fn project(&self, a1: Tensor<4>) -> Tensor<4> {
        self.bn2.forward(self.project_conv.forward(a1))
    }

    /// `[B, Cin, H, W]` → `[B, Cout, H/stride, W/stride]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a0 = match self.expansion(x.clone()) {
            Some(z0) => relu6(z0),
            None => x.clone(),
        };
        let y = self.project(relu6(self.depthwise(a0)));
        if self.residual { y + x } else { y }
    }

    /// Gradient at the input given the gradient at the output, with `rule` at both ReLU6s.
    pub fn backprop(&self, x: Tensor<4>, upstream: Tensor<4>, rule: ReluRule) -> Tensor<4> {
        let x = x.detach();
        let z0 = self.expansion(x.clone()).map(Tensor::detach);
        let a0 = z0.clone().map_or_else(|| x.clone(), relu6);
        let z1 = self.depthwise(a0.clone()).detach();
        let g = vjp(|t| self.project(t), relu6(z1.clone()), upstream.clone());
        let g = rule.apply_clipped(g, z1, 6.0);
        let g = vjp(|t| self.depthwise(t), a0, g);
        let g = match z0 {
            Some(z0) => {
                let g = rule.apply_clipped(g, z0, 6.0);
                match (&self.expand_conv, &self.bn0) {
                    (Some(c), Some(bn)) => vjp(|t| bn.forward(c.forward(t)), x, g),
                    _ => g,
                }
            }
            None => g,
        };
        if self.residual { g + upstream } else { g }
    }
}

/// The network. Build with [`EfficientNetLiteConfig::init`] or [`import_imagenet`].
#[derive(Module, Debug)]
pub struct EfficientNetLite {
    conv_stem: Conv2d,
    bn0: BatchNorm,
    blocks: Vec<MbConv>,
    conv_head: Conv2d,
    bn1: BatchNorm,
    dropout: Dropout,
    fc: Linear,
}

impl EfficientNetLiteConfig {
    pub fn init(&self, device: &Device) -> EfficientNetLite {
        let mut blocks = Vec::with_capacity(BLOCKS);
        let mut channels = STEM_CHANNELS;
        for (expand, kernel, stride, out, repeats) in STAGES {
            for r in 0..repeats {
                let s = if r == 0 { stride } else { 1 };
                blocks.push(MbConv::new(expand, kernel, s, channels, out, device));
                channels = out;
            }
        }
        EfficientNetLite {
            conv_stem: conv([self.input_channels, STEM_CHANNELS], 3, 2, 1, device),
            bn0: batch_norm(STEM_CHANNELS, device),
            blocks,
            conv_head: conv([channels, HEAD_CHANNELS], 1, 1, 1, device),
            bn1: batch_norm(HEAD_CHANNELS, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc: LinearConfig::new(HEAD_CHANNELS, self.class_names.len().max(1)).init(device),
        }
    }

    /// Side of the Grad-CAM target map for an input of `input_size`.
    pub fn feature_size(&self) -> usize {
        self.input_size.div_ceil(32)
    }
}

impl EfficientNetLite {
    fn stem_pre(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn0.forward(self.conv_stem.forward(x))
    }

    fn head_pre(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn1.forward(self.conv_head.forward(x))
    }

    /// Output of the stem and the first `blocks` blocks.
    pub fn prefix(&self, x: Tensor<4>, blocks: usize) -> Tensor<4> {
        self.blocks
            .iter()
            .take(blocks)
            .fold(relu6(self.stem_pre(x)), |h, b| b.forward(h))
    }

    /// Blocks `from..to` applied to `h`, the output of block `from − 1`.
    pub fn blocks_from(&self, h: Tensor<4>, from: usize, to: usize) -> Tensor<4> {
        self.blocks
            .iter()
            .take(to)
            .skip(from)
            .fold(h, |h, b| b.forward(h))
    }

    /// Head activations from the output of the first `blocks` blocks (see [`Self::prefix`]).
    pub fn suffix_features(&self, h: Tensor<4>, blocks: usize) -> Tensor<4> {
        let h = self.blocks.iter().skip(blocks).fold(h, |h, b| b.forward(h));
        relu6(self.head_pre(h))
    }

    /// Activations of the head convolution and, from the same pass, the features the
    /// out-of-distribution gate reads (see [`gate_vector`]).
    pub fn features_and_gate(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<2>) {
        let h = self.prefix(x, GATE_BLOCKS);
        let gate = gate_vector(h.clone());
        (self.suffix_features(h, GATE_BLOCKS), gate)
    }

    /// Activations of the head convolution, `[B, 1280, S/32, S/32]` (the Grad-CAM target).
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        self.suffix_features(self.prefix(x, BLOCKS), BLOCKS)
    }

    /// Globally pooled head activations `[B, 1280]` (what the classification layer and the
    /// out-of-distribution gate see).
    pub fn pooled(&self, x: Tensor<4>) -> Tensor<2> {
        global_avg_pool(self.features(x))
    }

    /// Logits from head activations.
    pub fn classify(&self, features: Tensor<4>) -> Tensor<2> {
        self.fc
            .forward(self.dropout.forward(global_avg_pool(features)))
    }

    /// `x`: `[B, C, S, S]` normalised image → `[B, classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.classify(self.features(x))
    }

    /// Freezes the stem and the first `blocks` blocks (weights and batch-norm statistics): the
    /// usual way to fine-tune a pretrained network on a small dataset, and cheaper on a CPU.
    pub fn freeze_prefix(mut self, blocks: usize) -> Self {
        self.conv_stem = self.conv_stem.freeze();
        self.bn0 = self.bn0.freeze();
        self.blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| if i < blocks { b.freeze() } else { b })
            .collect();
        self
    }

    /// Freezes everything but the classification layer.
    pub fn freeze_features(self) -> Self {
        let mut m = self.freeze_prefix(BLOCKS);
        m.conv_head = m.conv_head.freeze();
        m.bn1 = m.bn1.freeze();
        m
    }

    /// A fresh classification layer for `classes` outputs (the ImageNet one has 1000).
    pub fn with_new_head(mut self, classes: usize, device: &Device) -> Self {
        self.fc = LinearConfig::new(HEAD_CHANNELS, classes.max(1)).init(device);
        self
    }
}

impl Explainable for EfficientNetLite {
    fn target_features(&self, x: Tensor<4>) -> Tensor<4> {
        self.features(x)
    }

    fn head(&self, features: Tensor<4>) -> Tensor<2> {
        self.fc.forward(global_avg_pool(features))
    }

    fn backprop_features(&self, x: Tensor<4>, upstream: Tensor<4>, rule: ReluRule) -> Tensor<4> {
        let h = self.prefix(x.clone(), BLOCKS).detach();
        let z_head = self.head_pre(h.clone()).detach();
        let g = rule.apply_clipped(upstream, z_head, 6.0);
        let g = vjp(|t| self.head_pre(t), h, g);
        self.backprop_blocks(x, BLOCKS, g, rule)
    }
}

/// The out-of-distribution gate reads the output of the first this many blocks (the end of stage 5,
/// 112 channels at 1/16 of the input side)…
pub const GATE_BLOCKS: usize = 11;

/// …average-pooled onto a 2×2 grid, `[B, 448]`: mid-level features that keep the coarse layout
/// of the image (which half holds what). Measured on the Kermany classifier, they separate adult
/// from paediatric radiographs where the globally pooled head features do not (AUROC 1.000 vs
/// 0.937 against cxr-ieee8023; `models/pneumonia-effnet/MODEL_CARD.md`).
pub fn gate_vector(block_output: Tensor<4>) -> Tensor<2> {
    burn::tensor::module::adaptive_avg_pool2d(block_output, [2, 2]).flatten::<2>(1, 3)
}

/// What [`gate_vector`] is, in words.
pub const GATE_FEATURES: &str = "output of EfficientNet-Lite0 block 11 of 16 (end of stage 5, 112 channels), average-pooled to 2×2";

/// Blocks whose outputs a U-Net decoder takes: the last block at strides 2, 4, 8 and 16, and the
/// last block of all (stride 32).
pub const TAPS: [usize; 5] = [0, 2, 4, 10, 15];
/// Channels of those outputs.
pub const TAP_CHANNELS: [usize; 5] = [16, 24, 40, 112, 320];

impl EfficientNetLite {
    /// Outputs of the blocks in [`TAPS`], shallowest first: `[B, 16, S/2]` … `[B, 320, S/32]`.
    pub fn taps(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut out = Vec::with_capacity(TAPS.len());
        let mut h = relu6(self.stem_pre(x));
        for (i, block) in self
            .blocks
            .iter()
            .enumerate()
            .take(TAPS[TAPS.len() - 1] + 1)
        {
            h = block.forward(h);
            if TAPS.contains(&i) {
                out.push(h.clone());
            }
        }
        out
    }

    /// Push `upstream`, a gradient at the output of the first `blocks` blocks, back to the input
    /// with `rule` at every ReLU6 (segment-wise, see `ml::blocks`).
    pub fn backprop_blocks(
        &self,
        x: Tensor<4>,
        blocks: usize,
        upstream: Tensor<4>,
        rule: ReluRule,
    ) -> Tensor<4> {
        let x = x.detach();
        let mut inputs = Vec::with_capacity(blocks);
        let mut h = relu6(self.stem_pre(x.clone())).detach();
        for block in self.blocks.iter().take(blocks) {
            inputs.push(h.clone());
            h = block.forward(h).detach();
        }
        let mut g = upstream;
        for (block, input) in self.blocks.iter().take(blocks).zip(inputs).rev() {
            g = block.backprop(input, g, rule);
        }
        let z_stem = self.stem_pre(x.clone()).detach();
        let g = rule.apply_clipped(g, z_stem, 6.0);
        vjp(|t| self.stem_pre(t), x, g)
    }
}

/// File name of the ImageNet weights (`shared/pretrained/efficientnet-lite0/`).
pub const IMAGENET_WEIGHTS: &str = "efficientnet-lite0-57934424.pth";

/// Where the ImageNet weights are looked for: `$CXRLENS_PRETRAINED` (a file or a folder holding
/// it), then the project's `../shared/pretrained/efficientnet-lite0/` beside a source checkout.
pub fn default_imagenet_weights() -> Option<std::path::PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("CXRLENS_PRETRAINED") {
        let p = std::path::PathBuf::from(p);
        candidates.push(p.join(IMAGENET_WEIGHTS));
        candidates.push(p);
    }
    candidates.push(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/pretrained/efficientnet-lite0")
            .join(IMAGENET_WEIGHTS),
    );
    candidates.into_iter().find(|p| p.is_file())
}

/// Loads the ImageNet weights of EfficientNet-Lite0 from a PyTorch state dict (lukemelas layout:
/// `_conv_stem`, `_blocks.N._expand_conv`, …) through burn's PyTorch store, strictly: every
/// parameter of the network must be found with its shape. With `config.input_channels == 1` the
/// stem's RGB kernels are summed over the channels; when `config.class_names` does not have 1000
/// entries the ImageNet classification layer is replaced by a freshly initialised one.
pub fn import_imagenet(
    path: &Path,
    config: &EfficientNetLiteConfig,
    device: &Device,
) -> Result<EfficientNetLite, MlError> {
    use burn::store::{ModuleSnapshot, PytorchStore};
    if !path.is_file() {
        return Err(MlError::ModelFile {
            message: "no such file".into(),
            path: path.to_path_buf(),
        });
    }
    if !matches!(config.input_channels, 1 | 3) {
        return Err(MlError::Config(format!(
            "{} input channels: the ImageNet stem has 3 (or 1, summed)",
            config.input_channels
        )));
    }
    let imagenet = EfficientNetLiteConfig {
        input_channels: 3,
        class_names: (0..1000).map(|i| format!("imagenet-{i}")).collect(),
        ..config.clone()
    };
    let mut model = imagenet.init(device);
    let mut store = PytorchStore::from_file(path)
        // `_conv_stem.weight` → `conv_stem.weight`, `_blocks.3._bn1` → `blocks.3.bn1`.
        .with_key_remapping(r"(^|\.)_", "$1")
        .allow_partial(false);
    let applied = model
        .load_from(&mut store)
        .map_err(|e| MlError::Weights(format!("{e} ({})", path.display())))?;
    if !applied.missing.is_empty() || !applied.errors.is_empty() {
        let missing: Vec<&str> = applied.missing.iter().map(|(p, _)| p.as_str()).collect();
        return Err(MlError::Weights(format!(
            "{} parameters missing, {} errors (first: {:?} {:?}) in {}",
            applied.missing.len(),
            applied.errors.len(),
            missing.first(),
            applied.errors.first(),
            path.display()
        )));
    }
    if config.input_channels == 1 {
        let w = model.conv_stem.weight.val();
        let [out, _, kh, kw] = w.dims();
        let summed = w.sum_dim(1).reshape([out, 1, kh, kw]).detach();
        model.conv_stem.weight = burn::module::Param::from_tensor(summed);
    }
    if config.class_names.len() != 1000 {
        model = model.with_new_head(config.class_names.len(), device);
    }
    Ok(model)
}

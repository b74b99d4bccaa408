//! Multi-output lung network: a U-Net whose decoder predicts the lung mask and whose bottleneck
//! feeds a classification head. One forward gives both; the head's class activation map, cropped
//! to the predicted lungs, is the "U-Net-enhanced CAM".
//!
//! Two encoders: the plain U-Net one (double convolutions and max-pooling, trained from scratch;
//! `encoder = "unet"`, what bundles made before the choice hold) and EfficientNet-Lite0 started
//! from ImageNet weights (`encoder = "efficientnet-lite0"`), whose block outputs at strides 2–16
//! are the skips and whose last block (stride 32) is the bottleneck. The decoder is the same kind
//! in both: 2×2 transposed convolution, concatenation with the skip, double convolution; the
//! EfficientNet variant's last level takes the input image itself as its skip.

use burn::nn::conv::Conv2d;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::MaxPool2d;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::blocks::{DoubleConv, ReluRule, conv1x1, global_avg_pool, max_pool2, vjp};
use super::efficientnet::{EfficientNetLite, EfficientNetLiteConfig, TAP_CHANNELS, TAPS};
use super::explain::Explainable;

/// The plain U-Net encoder.
pub const UNET: &str = "unet";
/// The ImageNet-pretrained EfficientNet-Lite0 encoder.
pub const EFFICIENTNET: &str = "efficientnet-lite0";
/// Decoder widths of the EfficientNet variant, from stride 16 to stride 1.
const EFFICIENTNET_DECODER: [usize; 5] = [96, 48, 32, 24, 16];

/// Architecture of [`LungNet`]. Stored as `config.json` beside the weights.
#[derive(Config, Debug)]
pub struct LungNetConfig {
    /// Square input side in pixels; images are resampled to it.
    #[config(default = 128)]
    pub input_size: usize,
    /// U-Net encoder: channels of the first level; doubled at each level.
    #[config(default = 16)]
    pub base_channels: usize,
    /// U-Net encoder: number of pooling steps (the EfficientNet encoder has 5).
    #[config(default = 4)]
    pub depth: usize,
    /// Class names of the classification head, in output order.
    pub class_names: Vec<String>,
    /// [`EFFICIENTNET`] for the pretrained encoder; `None` (or [`UNET`]) for the plain U-Net —
    /// an `Option` so that configs written before the choice still load.
    pub encoder: Option<String>,
}

impl LungNetConfig {
    /// The Grad-CAM target layer of the class head, in words.
    pub fn target_layer(&self) -> String {
        let side = self.input_size >> self.downsamplings();
        if self.encoder.as_deref() == Some(EFFICIENTNET) {
            format!("EfficientNet-Lite0 block 16 (320 channels, {side}×{side})")
        } else {
            format!(
                "U-Net bottleneck ({} channels, {side}×{side})",
                self.base_channels << self.depth
            )
        }
    }

    /// How many times the network halves its input.
    pub fn downsamplings(&self) -> usize {
        if self.encoder.as_deref() == Some(EFFICIENTNET) {
            5
        } else {
            self.depth
        }
    }
}

/// Both outputs of one forward pass.
#[derive(Debug, Clone)]
pub struct LungOutput {
    /// `[B, 1, S, S]` lung logits (sigmoid → probability of lung).
    pub mask_logits: Tensor<4>,
    /// `[B, classes]` class logits.
    pub class_logits: Tensor<2>,
    /// `[B, C]` globally pooled bottleneck activations (what the class head reads).
    pub pooled: Tensor<2>,
    /// What the out-of-distribution gate reads: the pooled bottleneck (U-Net encoder), or the
    /// EfficientNet encoder's stride-16 output pooled to 2×2 (`efficientnet::gate_vector`).
    pub gate: Tensor<2>,
}

/// The multi-output U-Net. Build with [`LungNetConfig::init`].
#[derive(Module, Debug)]
pub struct LungNet {
    /// U-Net encoder levels (empty with a backbone).
    encoder: Vec<DoubleConv>,
    pool: MaxPool2d,
    /// U-Net bottleneck (none with a backbone, whose last block is the bottleneck).
    bottleneck: Option<DoubleConv>,
    /// The EfficientNet-Lite0 encoder (its head convolution and classifier are unused).
    backbone: Option<EfficientNetLite>,
    up: Vec<ConvTranspose2d>,
    decoder: Vec<DoubleConv>,
    mask_head: Conv2d,
    class_head: Linear,
}

impl LungNet {
    /// Freezes the encoder and the bottleneck (weights and batch-norm statistics), so fine-tuning
    /// adapts only the decoder and the two heads.
    pub fn freeze_encoder(mut self) -> Self {
        self.encoder = self.encoder.into_iter().map(Module::freeze).collect();
        self.bottleneck = self.bottleneck.map(Module::freeze);
        self.backbone = self.backbone.map(Module::freeze);
        self
    }

    /// What [`LungOutput::gate`] holds, in words.
    pub fn gate_features(&self) -> &'static str {
        if self.backbone.is_some() {
            super::efficientnet::GATE_FEATURES
        } else {
            "globally pooled U-Net bottleneck"
        }
    }

    /// Replaces the (randomly initialised) EfficientNet encoder with `backbone`, e.g. the ImageNet
    /// weights from `efficientnet::import_imagenet`. No-op for the U-Net encoder.
    pub fn with_backbone(mut self, backbone: EfficientNetLite) -> Self {
        if self.backbone.is_some() {
            self.backbone = Some(backbone);
        }
        self
    }
}

fn up_conv(channels_in: usize, channels_out: usize, device: &Device) -> ConvTranspose2d {
    ConvTranspose2dConfig::new([channels_in, channels_out], [2, 2])
        .with_stride([2, 2])
        .init(device)
}

impl LungNetConfig {
    pub fn init(&self, device: &Device) -> LungNet {
        if self.encoder.as_deref() == Some(EFFICIENTNET) {
            return self.init_efficientnet(device);
        }
        let widths: Vec<usize> = (0..=self.depth).map(|i| self.base_channels << i).collect();
        let mut encoder = Vec::with_capacity(self.depth);
        let mut channels_in = 1;
        for &w in &widths[..self.depth] {
            encoder.push(DoubleConv::new(channels_in, w, device));
            channels_in = w;
        }
        let bottleneck = DoubleConv::new(widths[self.depth - 1], widths[self.depth], device);
        let mut up = Vec::with_capacity(self.depth);
        let mut decoder = Vec::with_capacity(self.depth);
        for level in (0..self.depth).rev() {
            up.push(up_conv(widths[level + 1], widths[level], device));
            decoder.push(DoubleConv::new(widths[level] * 2, widths[level], device));
        }
        LungNet {
            encoder,
            pool: max_pool2(),
            bottleneck: Some(bottleneck),
            backbone: None,
            up,
            decoder,
            mask_head: conv1x1(widths[0], 1, 1, true, device),
            class_head: LinearConfig::new(widths[self.depth], self.class_names.len()).init(device),
        }
    }

    fn init_efficientnet(&self, device: &Device) -> LungNet {
        let backbone = EfficientNetLiteConfig::new(vec!["unused".into()])
            .with_input_size(self.input_size)
            .init(device);
        // Skips from stride 16 up to stride 2, then the input image itself (1 channel) at stride 1.
        let skips = [
            TAP_CHANNELS[3],
            TAP_CHANNELS[2],
            TAP_CHANNELS[1],
            TAP_CHANNELS[0],
            1,
        ];
        let bottom = TAP_CHANNELS[4];
        let mut up = Vec::with_capacity(5);
        let mut decoder = Vec::with_capacity(5);
        let mut channels = bottom;
        for (&width, &skip) in EFFICIENTNET_DECODER.iter().zip(&skips) {
            up.push(up_conv(channels, width, device));
            decoder.push(DoubleConv::new(width + skip, width, device));
            channels = width;
        }
        LungNet {
            encoder: Vec::new(),
            pool: max_pool2(),
            bottleneck: None,
            backbone: Some(backbone),
            up,
            decoder,
            mask_head: conv1x1(channels, 1, 1, true, device),
            class_head: LinearConfig::new(bottom, self.class_names.len()).init(device),
        }
    }
}

impl LungNet {
    /// Encoder: returns the skip tensors (shallowest first) and the bottleneck activations.
    fn encode(&self, x: Tensor<4>) -> (Vec<Tensor<4>>, Tensor<4>) {
        if let Some(backbone) = &self.backbone {
            let mut taps = backbone.taps(x.clone());
            let bottom = taps.pop().unwrap_or_else(|| x.clone());
            let mut skips = vec![x];
            skips.extend(taps);
            return (skips, bottom);
        }
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut h = x;
        for block in &self.encoder {
            let s = block.forward(h);
            h = self.pool.forward(s.clone());
            skips.push(s);
        }
        let bottom = match &self.bottleneck {
            Some(b) => b.forward(h),
            None => h,
        };
        (skips, bottom)
    }

    /// `x`: `[B, 1, S, S]` normalised image (see `ml::preprocess`). One pass, both outputs.
    pub fn forward(&self, x: Tensor<4>) -> LungOutput {
        let (skips, bottom) = self.encode(x);
        let pooled = global_avg_pool(bottom.clone());
        // With the backbone, skips are [input, stride 2, 4, 8, 16]: the last one is the output of
        // block 11 (`TAPS[3]` = `GATE_BLOCKS` − 1), the gate's features.
        let gate = match (&self.backbone, skips.last()) {
            (Some(_), Some(s16)) => super::efficientnet::gate_vector(s16.clone()),
            _ => pooled.clone(),
        };
        let class_logits = self.class_head.forward(pooled.clone());
        let mut h = bottom;
        for ((up, block), skip) in self
            .up
            .iter()
            .zip(&self.decoder)
            .zip(skips.into_iter().rev())
        {
            h = block.forward(Tensor::cat(vec![up.forward(h), skip], 1));
        }
        LungOutput {
            mask_logits: self.mask_head.forward(h),
            class_logits,
            pooled,
            gate,
        }
    }
}

impl Explainable for LungNet {
    /// The bottleneck activations (U-Net: `[B, 16·2^depth, S/2^depth, …]`; EfficientNet: the last
    /// block, `[B, 320, S/32, …]`): the last conv layer the classification head sees.
    fn target_features(&self, x: Tensor<4>) -> Tensor<4> {
        self.encode(x).1
    }

    fn head(&self, features: Tensor<4>) -> Tensor<2> {
        self.class_head.forward(global_avg_pool(features))
    }

    fn backprop_features(&self, x: Tensor<4>, upstream: Tensor<4>, rule: ReluRule) -> Tensor<4> {
        if let Some(backbone) = &self.backbone {
            return backbone.backprop_blocks(x, TAPS[TAPS.len() - 1] + 1, upstream, rule);
        }
        // Recompute the encoder inputs level by level, then walk back.
        let mut inputs = Vec::with_capacity(self.encoder.len() + 1);
        let mut h = x.detach();
        for block in &self.encoder {
            inputs.push(h.clone());
            h = self.pool.forward(block.forward(h)).detach();
        }
        let mut g = match &self.bottleneck {
            Some(b) => b.backprop(h, upstream, rule),
            None => upstream,
        };
        for (block, input) in self.encoder.iter().zip(inputs).rev() {
            let s = block.forward(input.clone()).detach();
            g = vjp(|t| self.pool.forward(t), s, g);
            g = block.backprop(input, g, rule);
        }
        g
    }
}

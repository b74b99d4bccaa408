//! Multi-output lung network: a U-Net whose decoder predicts the lung mask and whose bottleneck
//! feeds a classification head. One forward gives both; the head's class activation map, cropped
//! to the predicted lungs, is the "U-Net-enhanced CAM".

use burn::nn::conv::Conv2d;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::MaxPool2d;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use super::blocks::{DoubleConv, ReluRule, conv1x1, global_avg_pool, max_pool2, vjp};
use super::explain::Explainable;

/// Architecture of [`LungNet`]. Stored as `config.json` beside the weights.
#[derive(Config, Debug)]
pub struct LungNetConfig {
    /// Square input side in pixels; images are resampled to it.
    #[config(default = 128)]
    pub input_size: usize,
    /// Channels of the first encoder level; doubled at each level.
    #[config(default = 16)]
    pub base_channels: usize,
    /// Number of pooling steps (encoder levels below the input).
    #[config(default = 4)]
    pub depth: usize,
    /// Class names of the classification head, in output order.
    pub class_names: Vec<String>,
}

/// Both outputs of one forward pass.
#[derive(Debug, Clone)]
pub struct LungOutput {
    /// `[B, 1, S, S]` lung logits (sigmoid → probability of lung).
    pub mask_logits: Tensor<4>,
    /// `[B, classes]` class logits.
    pub class_logits: Tensor<2>,
    /// `[B, C]` globally pooled bottleneck activations (what the class head and the
    /// out-of-distribution gate read).
    pub pooled: Tensor<2>,
}

/// The multi-output U-Net. Build with [`LungNetConfig::init`].
#[derive(Module, Debug)]
pub struct LungNet {
    encoder: Vec<DoubleConv>,
    pool: MaxPool2d,
    bottleneck: DoubleConv,
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
        self.bottleneck = self.bottleneck.freeze();
        self
    }
}

impl LungNetConfig {
    pub fn init(&self, device: &Device) -> LungNet {
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
            up.push(
                ConvTranspose2dConfig::new([widths[level + 1], widths[level]], [2, 2])
                    .with_stride([2, 2])
                    .init(device),
            );
            decoder.push(DoubleConv::new(widths[level] * 2, widths[level], device));
        }
        LungNet {
            encoder,
            pool: max_pool2(),
            bottleneck,
            up,
            decoder,
            mask_head: conv1x1(widths[0], 1, 1, true, device),
            class_head: LinearConfig::new(widths[self.depth], self.class_names.len()).init(device),
        }
    }
}

impl LungNet {
    /// Encoder: returns the skip tensors (one per level) and the bottleneck activations.
    fn encode(&self, x: Tensor<4>) -> (Vec<Tensor<4>>, Tensor<4>) {
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut h = x;
        for block in &self.encoder {
            let s = block.forward(h);
            h = self.pool.forward(s.clone());
            skips.push(s);
        }
        (skips, self.bottleneck.forward(h))
    }

    /// `x`: `[B, 1, S, S]` normalised image (see `ml::preprocess`). One pass, both outputs.
    pub fn forward(&self, x: Tensor<4>) -> LungOutput {
        let (skips, bottom) = self.encode(x);
        let pooled = global_avg_pool(bottom.clone());
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
        }
    }
}

impl Explainable for LungNet {
    /// The bottleneck activations `[B, 16·2^depth, S/2^depth, S/2^depth]`: the last conv layer
    /// the classification head sees.
    fn target_features(&self, x: Tensor<4>) -> Tensor<4> {
        self.encode(x).1
    }

    fn head(&self, features: Tensor<4>) -> Tensor<2> {
        self.class_head.forward(global_avg_pool(features))
    }

    fn backprop_features(&self, x: Tensor<4>, upstream: Tensor<4>, rule: ReluRule) -> Tensor<4> {
        // Recompute the encoder inputs level by level, then walk back.
        let mut inputs = Vec::with_capacity(self.encoder.len() + 1);
        let mut h = x.detach();
        for block in &self.encoder {
            inputs.push(h.clone());
            h = self.pool.forward(block.forward(h)).detach();
        }
        let mut g = self.bottleneck.backprop(h, upstream, rule);
        for (block, input) in self.encoder.iter().zip(inputs).rev() {
            let s = block.forward(input.clone()).detach();
            g = vjp(|t| self.pool.forward(t), s, g);
            g = block.backprop(input, g, rule);
        }
        g
    }
}

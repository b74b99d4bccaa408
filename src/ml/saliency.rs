//! Saliency network: predicts where a radiologist would look, as a per-pixel distribution.
//!
//! A Residual + Squeeze-Excitation U-Net (RSE U-Net) whose decoder also takes the last-stage
//! features of the classifier's encoder (dual-encoder fusion): at the bottleneck both encoders'
//! features are concatenated and mixed by a 1×1 convolution before decoding. The output is a
//! softmax over all pixels, so each map sums to 1 (comparable to a gaze heatmap with KL, CC, HS).
//! Training (classifier encoder → saliency decoder with KL loss, encoder frozen → fusion
//! classifier) lives in the trainer.

use burn::nn::conv::{Conv2d, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::MaxPool2d;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::blocks::{ResSeBlock, conv1x1, max_pool2};

/// Architecture of [`SaliencyNet`]. Stored as `config.json` beside the weights.
#[derive(Config, Debug)]
pub struct SaliencyNetConfig {
    /// Square input side in pixels (the same grid as the classifier's input).
    #[config(default = 128)]
    pub input_size: usize,
    #[config(default = 16)]
    pub base_channels: usize,
    #[config(default = 4)]
    pub depth: usize,
    /// Channels of the classifier features fused at the bottleneck.
    pub classifier_channels: usize,
    /// Classes of the fusion classifier head (stage 3); the classifier's classes.
    #[config(default = "Vec::new()")]
    pub class_names: Vec<String>,
    /// Title ("name version") of the classifier whose features it was trained with; inference
    /// must use the same one.
    #[config(default = "String::new()")]
    pub classifier_title: String,
}

/// The RSE U-Net with classifier-feature fusion. Build with [`SaliencyNetConfig::init`].
#[derive(Module, Debug)]
pub struct SaliencyNet {
    encoder: Vec<ResSeBlock>,
    pool: MaxPool2d,
    bottleneck: ResSeBlock,
    fusion: Conv2d,
    up: Vec<ConvTranspose2d>,
    decoder: Vec<ResSeBlock>,
    head: Conv2d,
    /// Fusion classifier: class logits from the pooled fused bottleneck.
    fusion_head: Linear,
}

impl SaliencyNetConfig {
    pub fn init(&self, device: &Device) -> SaliencyNet {
        let widths: Vec<usize> = (0..=self.depth).map(|i| self.base_channels << i).collect();
        let mut encoder = Vec::new();
        let mut channels_in = 1;
        for &w in &widths[..self.depth] {
            encoder.push(ResSeBlock::new(channels_in, w, device));
            channels_in = w;
        }
        let bottom = widths[self.depth];
        let mut up = Vec::new();
        let mut decoder = Vec::new();
        for level in (0..self.depth).rev() {
            up.push(
                ConvTranspose2dConfig::new([widths[level + 1], widths[level]], [2, 2])
                    .with_stride([2, 2])
                    .init(device),
            );
            decoder.push(ResSeBlock::new(widths[level] * 2, widths[level], device));
        }
        SaliencyNet {
            encoder,
            pool: max_pool2(),
            bottleneck: ResSeBlock::new(widths[self.depth - 1], bottom, device),
            fusion: conv1x1(bottom + self.classifier_channels, bottom, 1, true, device),
            up,
            decoder,
            head: conv1x1(widths[0], 1, 1, true, device),
            fusion_head: LinearConfig::new(bottom, self.class_names.len().max(1)).init(device),
        }
    }
}

impl SaliencyNet {
    /// Logits `[B, 1, S, S]` before the spatial softmax.
    ///
    /// `x`: `[B, 1, S, S]` normalised image; `classifier_features`: `[B, C, h, w]` from
    /// `Classifier::features` on the same image (resized here to the bottleneck grid).
    pub fn forward_logits(&self, x: Tensor<4>, classifier_features: Tensor<4>) -> Tensor<4> {
        self.forward_both(x, classifier_features).0
    }

    /// Class logits of the fusion classifier (stage 3) from the fused bottleneck.
    pub fn classify(&self, x: Tensor<4>, classifier_features: Tensor<4>) -> Tensor<2> {
        self.forward_both(x, classifier_features).1
    }

    /// Freezes everything but the fusion classifier head (stage 3: both encoders frozen).
    pub fn freeze_all_but_fusion_head(mut self) -> Self {
        self.encoder = self.encoder.into_iter().map(Module::freeze).collect();
        self.bottleneck = self.bottleneck.freeze();
        self.fusion = self.fusion.freeze();
        self.up = self.up.into_iter().map(Module::freeze).collect();
        self.decoder = self.decoder.into_iter().map(Module::freeze).collect();
        self.head = self.head.freeze();
        self
    }

    /// (saliency logits, fusion class logits)
    fn forward_both(&self, x: Tensor<4>, classifier_features: Tensor<4>) -> (Tensor<4>, Tensor<2>) {
        let mut skips = Vec::new();
        let mut h = x;
        for block in &self.encoder {
            let s = block.forward(h);
            h = self.pool.forward(s.clone());
            skips.push(s);
        }
        let bottom = self.bottleneck.forward(h);
        let [_, _, bh, bw] = bottom.dims();
        let other = interpolate(
            classifier_features,
            InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_align_corners(false)
                .with_output_size([bh, bw]),
        );
        let mut h = relu(self.fusion.forward(Tensor::cat(vec![bottom, other], 1)));
        let [b, c, fh, fw] = h.dims();
        let pooled = h
            .clone()
            .reshape([b, c, fh * fw])
            .mean_dim(2)
            .reshape([b, c]);
        let class_logits = self.fusion_head.forward(pooled);
        for ((up, block), skip) in self
            .up
            .iter()
            .zip(&self.decoder)
            .zip(skips.into_iter().rev())
        {
            h = block.forward(Tensor::cat(vec![up.forward(h), skip], 1));
        }
        (self.head.forward(h), class_logits)
    }

    /// Predicted fixation distribution `[B, 1, S, S]`: non-negative, each map sums to 1.
    pub fn forward(&self, x: Tensor<4>, classifier_features: Tensor<4>) -> Tensor<4> {
        let logits = self.forward_logits(x, classifier_features);
        let [b, c, h, w] = logits.dims();
        softmax(logits.reshape([b, c * h * w]), 1).reshape([b, c, h, w])
    }
}

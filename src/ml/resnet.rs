//! ResNet-style chest X-ray classifier. Its last residual stage is the Grad-CAM target layer; the
//! head is global average pooling + a linear layer, so per-class probabilities come from a
//! softmax over the logits.

use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::blocks::{BasicBlock, ReluRule, conv3x3, global_avg_pool, max_pool2, vjp};
use super::explain::Explainable;

/// Architecture of [`ResNet`]. Stored as `config.json` beside the weights.
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Square input side in pixels; images are resampled to it.
    #[config(default = 128)]
    pub input_size: usize,
    /// Channels of the stem; doubled at each stage after the first.
    #[config(default = 16)]
    pub base_channels: usize,
    /// Residual blocks per stage (each stage after the first halves the resolution).
    #[config(default = "vec![2, 2, 2]")]
    pub blocks_per_stage: Vec<usize>,
    /// Class names, in output order.
    pub class_names: Vec<String>,
}

/// The classifier. Build with [`ResNetConfig::init`].
#[derive(Module, Debug)]
pub struct ResNet {
    stem_conv: Conv2d,
    stem_bn: BatchNorm,
    pool: MaxPool2d,
    blocks: Vec<BasicBlock>,
    head: Linear,
}

impl ResNet {
    /// Freezes the stem and every residual stage, so fine-tuning adapts only the class head.
    pub fn freeze_features(mut self) -> Self {
        self.stem_conv = self.stem_conv.freeze();
        self.stem_bn = self.stem_bn.freeze();
        self.blocks = self.blocks.into_iter().map(Module::freeze).collect();
        self
    }
}

impl ResNetConfig {
    pub fn init(&self, device: &Device) -> ResNet {
        let mut blocks = Vec::new();
        let mut channels = self.base_channels;
        for (stage, &count) in self.blocks_per_stage.iter().enumerate() {
            let out = self.base_channels << stage;
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(channels, out, stride, device));
                channels = out;
            }
        }
        ResNet {
            stem_conv: conv3x3(1, self.base_channels, 2, device),
            stem_bn: BatchNormConfig::new(self.base_channels).init(device),
            pool: max_pool2(),
            blocks,
            head: LinearConfig::new(channels, self.class_names.len()).init(device),
        }
    }

    /// Side of the target feature map for an input of `input_size`.
    pub fn feature_size(&self) -> usize {
        let stages = self.blocks_per_stage.len().saturating_sub(1);
        (self.input_size / 4) >> stages
    }
}

impl ResNet {
    fn stem(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool
            .forward(relu(self.stem_bn.forward(self.stem_conv.forward(x))))
    }

    /// Activations of the last residual stage, `[B, C_last, S/4/2^(stages-1), …]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        self.blocks
            .iter()
            .fold(self.stem(x), |h, block| block.forward(h))
    }

    /// `x`: `[B, 1, S, S]` normalised image → `[B, classes]` logits.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(global_avg_pool(self.features(x)))
    }
}

impl ResNet {
    /// Guided-backpropagation map of `classes[b]` for each image, `[B, 1, S, S]`, built from
    /// explicit transposes so that a loss on it trains the weights (the heatmap-generator loss).
    /// Batch norm enters with its running statistics, as in inference. Equals
    /// `explain::rule_gradient(…, ReluRule::Guided)` (tested).
    pub fn guided_backprop_map(&self, x: Tensor<4>, classes: &[usize]) -> Tensor<4> {
        use super::blocks::{bn_transpose, conv_transpose_of, guided, max_pool2_transpose};
        let x = x.detach();
        let [b, _, s_h, s_w] = x.dims();
        // Masks from the network in inference mode (batch norm on its running statistics).
        let frozen = self.clone().freeze();
        let z0 = frozen
            .stem_bn
            .forward(frozen.stem_conv.forward(x.clone()))
            .detach();
        let a0 = relu(z0.clone());
        let p0 = frozen.pool.forward(a0.clone());
        let mut inputs = Vec::with_capacity(self.blocks.len());
        let mut h = p0.clone();
        for block in &frozen.blocks {
            inputs.push(h.clone());
            h = block.forward(h).detach();
        }
        let [_, c, fh, fw] = h.dims();
        // d logit / d features: the head's weight column of the class, spread by the average pool.
        let weight = self.head.weight.val(); // [C, classes]
        let columns: Vec<Tensor<2>> = classes
            .iter()
            .map(|&k| weight.clone().narrow(1, k, 1).reshape([1, c]))
            .collect();
        let mut g = Tensor::cat(columns, 0)
            .reshape([b, c, 1, 1])
            .repeat_dim(2, fh)
            .repeat_dim(3, fw)
            .div_scalar((fh * fw) as f32);
        for ((block, f), input) in self.blocks.iter().zip(&frozen.blocks).zip(inputs).rev() {
            g = block.guided_transpose(f, input, g);
        }
        let g = max_pool2_transpose(a0, p0, g);
        let g = guided(g, z0);
        conv_transpose_of(&self.stem_conv, bn_transpose(&self.stem_bn, g), [s_h, s_w])
    }
}

impl Explainable for ResNet {
    fn target_features(&self, x: Tensor<4>) -> Tensor<4> {
        self.features(x)
    }

    fn head(&self, features: Tensor<4>) -> Tensor<2> {
        self.head.forward(global_avg_pool(features))
    }

    fn backprop_features(&self, x: Tensor<4>, upstream: Tensor<4>, rule: ReluRule) -> Tensor<4> {
        let x = x.detach();
        let mut inputs = Vec::with_capacity(self.blocks.len());
        let mut h = self.stem(x.clone()).detach();
        for block in &self.blocks {
            inputs.push(h.clone());
            h = block.forward(h).detach();
        }
        let mut g = upstream;
        for (block, input) in self.blocks.iter().zip(inputs).rev() {
            g = block.backprop(input, g, rule);
        }
        // Stem: conv → BN → ReLU → max-pool.
        let z = self
            .stem_bn
            .forward(self.stem_conv.forward(x.clone()))
            .detach();
        g = vjp(|t| self.pool.forward(t), relu(z.clone()), g);
        g = rule.apply(g, z);
        vjp(|t| self.stem_bn.forward(self.stem_conv.forward(t)), x, g)
    }
}

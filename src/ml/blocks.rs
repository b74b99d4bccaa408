//! Building blocks shared by the networks, each able to push a gradient back to its input with a
//! chosen ReLU rule (plain, guided, deconvnet).
//!
//! burn has no hook for a custom ReLU backward, so rule-aware backpropagation runs segment by
//! segment: every linear stretch between two ReLUs (conv + batch norm in inference mode, pooling)
//! is differentiated on a detached leaf with a vector–Jacobian product, and the upstream gradient
//! is rewritten at each ReLU boundary. With [`ReluRule::Plain`] this reproduces the ordinary input
//! gradient exactly (tested), so the other rules differ from it only where the papers say.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};

/// How a gradient crosses a ReLU when explanations are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReluRule {
    /// The true derivative: pass the gradient where the forward input was positive.
    Plain,
    /// Guided backpropagation (Springenberg et al.): pass only positive gradients, and only where
    /// the forward input was positive.
    Guided,
    /// Deconvnet (Zeiler & Fergus): pass positive upstream signal, whatever the forward input.
    Deconv,
}

impl ReluRule {
    /// The gradient below a ReLU whose input was `pre_activation`, given `upstream` above it.
    pub fn apply(self, upstream: Tensor<4>, pre_activation: Tensor<4>) -> Tensor<4> {
        match self {
            ReluRule::Plain => upstream * pre_activation.greater_elem(0.0).float(),
            ReluRule::Guided => upstream.clamp_min(0.0) * pre_activation.greater_elem(0.0).float(),
            ReluRule::Deconv => upstream.clamp_min(0.0),
        }
    }

    /// The same rule at a clipped ReLU `min(max(z, 0), max)` (ReLU6 has `max` = 6): its derivative
    /// is 1 only where `0 < z < max`, so the forward mask closes above the clip too.
    pub fn apply_clipped(
        self,
        upstream: Tensor<4>,
        pre_activation: Tensor<4>,
        max: f32,
    ) -> Tensor<4> {
        let open = || {
            pre_activation.clone().greater_elem(0.0).float()
                * pre_activation.clone().lower_elem(max).float()
        };
        match self {
            ReluRule::Plain => upstream * open(),
            ReluRule::Guided => upstream.clamp_min(0.0) * open(),
            ReluRule::Deconv => upstream.clamp_min(0.0),
        }
    }
}

/// Vector–Jacobian product of `f` at `x`: `Jᵀ·upstream`, computed by autodiff on a detached leaf.
///
/// `x` must live on an autodiff device. Returns a tensor without graph.
pub fn vjp(f: impl FnOnce(Tensor<4>) -> Tensor<4>, x: Tensor<4>, upstream: Tensor<4>) -> Tensor<4> {
    let leaf = x.detach().require_grad();
    let y = f(leaf.clone());
    let grads = (y * upstream.detach()).sum().backward();
    match leaf.grad(&grads) {
        Some(g) => g.autodiff(),
        // The output does not depend on the input (cannot happen for the layers used here).
        None => leaf.detach().zeros_like(),
    }
}

/// 3×3 convolution with "same" padding, no bias (batch norm follows).
pub fn conv3x3(channels_in: usize, channels_out: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

/// 1×1 convolution.
pub fn conv1x1(
    channels_in: usize,
    channels_out: usize,
    stride: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [1, 1])
        .with_stride([stride, stride])
        .with_bias(bias)
        .init(device)
}

/// 2×2 max pooling, stride 2.
pub fn max_pool2() -> MaxPool2d {
    MaxPool2dConfig::new([2, 2]).init()
}

/// conv3×3 → BN → ReLU → conv3×3 → BN → ReLU (the U-Net "double conv").
#[derive(Module, Debug)]
pub struct DoubleConv {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
}

impl DoubleConv {
    pub fn new(channels_in: usize, channels_out: usize, device: &Device) -> Self {
        Self {
            conv1: conv3x3(channels_in, channels_out, 1, device),
            bn1: BatchNormConfig::new(channels_out).init(device),
            conv2: conv3x3(channels_out, channels_out, 1, device),
            bn2: BatchNormConfig::new(channels_out).init(device),
        }
    }

    /// `[B, Cin, H, W]` → `[B, Cout, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        relu(self.bn2.forward(self.conv2.forward(x)))
    }

    /// Gradient at the input given the gradient at the output, with `rule` at both ReLUs.
    pub fn backprop(&self, x: Tensor<4>, upstream: Tensor<4>, rule: ReluRule) -> Tensor<4> {
        let x = x.detach();
        let z1 = self.bn1.forward(self.conv1.forward(x.clone())).detach();
        let a1 = relu(z1.clone());
        let z2 = self.bn2.forward(self.conv2.forward(a1.clone())).detach();
        let g = rule.apply(upstream, z2);
        let g = vjp(|t| self.bn2.forward(self.conv2.forward(t)), a1, g);
        let g = rule.apply(g, z1);
        vjp(|t| self.bn1.forward(self.conv1.forward(t)), x, g)
    }
}

/// ResNet basic block: conv3×3(stride) → BN → ReLU → conv3×3 → BN, plus a shortcut (identity, or
/// 1×1 conv + BN when the shape changes), then ReLU.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<Shortcut>,
}

/// Projection shortcut of a residual block.
#[derive(Module, Debug)]
pub struct Shortcut {
    conv: Conv2d,
    bn: BatchNorm,
}

impl Shortcut {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
}

impl BasicBlock {
    pub fn new(channels_in: usize, channels_out: usize, stride: usize, device: &Device) -> Self {
        let shortcut = (stride != 1 || channels_in != channels_out).then(|| Shortcut {
            conv: conv1x1(channels_in, channels_out, stride, false, device),
            bn: BatchNormConfig::new(channels_out).init(device),
        });
        Self {
            conv1: conv3x3(channels_in, channels_out, stride, device),
            bn1: BatchNormConfig::new(channels_out).init(device),
            conv2: conv3x3(channels_out, channels_out, 1, device),
            bn2: BatchNormConfig::new(channels_out).init(device),
            shortcut,
        }
    }

    fn branch_tail(&self, a1: Tensor<4>) -> Tensor<4> {
        self.bn2.forward(self.conv2.forward(a1))
    }

    fn identity(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.shortcut {
            Some(s) => s.forward(x),
            None => x,
        }
    }

    /// `[B, Cin, H, W]` → `[B, Cout, H/stride, W/stride]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a1 = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        relu(self.branch_tail(a1) + self.identity(x))
    }

    /// Gradient at the input given the gradient at the output, with `rule` at both ReLUs.
    pub fn backprop(&self, x: Tensor<4>, upstream: Tensor<4>, rule: ReluRule) -> Tensor<4> {
        let x = x.detach();
        let z1 = self.bn1.forward(self.conv1.forward(x.clone())).detach();
        let a1 = relu(z1.clone());
        let z2 = (self.branch_tail(a1.clone()) + self.identity(x.clone())).detach();
        let g = rule.apply(upstream, z2);
        // Shortcut path.
        let g_short = match &self.shortcut {
            Some(s) => vjp(|t| s.forward(t), x.clone(), g.clone()),
            None => g.clone(),
        };
        // Residual path.
        let g_branch = vjp(|t| self.branch_tail(t), a1, g);
        let g_branch = rule.apply(g_branch, z1);
        let g_branch = vjp(|t| self.bn1.forward(self.conv1.forward(t)), x, g_branch);
        g_short + g_branch
    }
}

/// Squeeze-and-excitation: channel weights from global average pooling through a bottleneck MLP.
#[derive(Module, Debug)]
pub struct SqueezeExcitation {
    reduce: Linear,
    expand: Linear,
}

impl SqueezeExcitation {
    pub fn new(channels: usize, reduction: usize, device: &Device) -> Self {
        let hidden = (channels / reduction).max(4);
        Self {
            reduce: LinearConfig::new(channels, hidden).init(device),
            expand: LinearConfig::new(hidden, channels).init(device),
        }
    }

    /// `[B, C, H, W]` → same shape, each channel scaled by a learned weight in (0, 1).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, _, _] = x.dims();
        let squeezed = x.clone().mean_dim(3).mean_dim(2).reshape([b, c]);
        let weights = sigmoid(self.expand.forward(relu(self.reduce.forward(squeezed))));
        x * weights.reshape([b, c, 1, 1])
    }
}

/// Residual + squeeze-excitation block (the "RSE" unit of the saliency U-Net).
#[derive(Module, Debug)]
pub struct ResSeBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    se: SqueezeExcitation,
    shortcut: Option<Shortcut>,
}

impl ResSeBlock {
    pub fn new(channels_in: usize, channels_out: usize, device: &Device) -> Self {
        let shortcut = (channels_in != channels_out).then(|| Shortcut {
            conv: conv1x1(channels_in, channels_out, 1, false, device),
            bn: BatchNormConfig::new(channels_out).init(device),
        });
        Self {
            conv1: conv3x3(channels_in, channels_out, 1, device),
            bn1: BatchNormConfig::new(channels_out).init(device),
            conv2: conv3x3(channels_out, channels_out, 1, device),
            bn2: BatchNormConfig::new(channels_out).init(device),
            se: SqueezeExcitation::new(channels_out, 8, device),
            shortcut,
        }
    }

    /// `[B, Cin, H, W]` → `[B, Cout, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.shortcut {
            Some(s) => s.forward(x.clone()),
            None => x.clone(),
        };
        let y = relu(self.bn1.forward(self.conv1.forward(x)));
        let y = self.se.forward(self.bn2.forward(self.conv2.forward(y)));
        relu(y + identity)
    }
}

/// Global average pooling: `[B, C, H, W]` → `[B, C]`.
pub fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [b, c, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([b, c])
}

// ---- Differentiable guided backpropagation (for the heatmap-generator loss) -------------------
//
// `vjp` above detaches: fine for explanations, but a loss on a guided-backprop map must reach the
// weights. These helpers apply the transposes explicitly — batch norm as its inference-mode affine
// scale, convolutions as transposed convolutions with the same weights, max-pool as routing to
// the maxima — so the map is an ordinary tensor expression of the weights. Masks (ReLU signs,
// max positions) are taken from a detached forward pass, as guided backprop defines them.

/// The guided rule with a detached mask: positive upstream, where the forward input was positive.
pub fn guided(upstream: Tensor<4>, pre_activation: Tensor<4>) -> Tensor<4> {
    upstream.clamp_min(0.0) * pre_activation.detach().greater_elem(0.0).float()
}

/// Jᵀ·g of batch norm in inference mode: g · γ / √(running var + ε), per channel.
pub fn bn_transpose(bn: &BatchNorm, g: Tensor<4>) -> Tensor<4> {
    let c = bn.gamma.val().dims()[0];
    let scale = bn.gamma.val() / bn.running_var.value().add_scalar(bn.epsilon).sqrt();
    g * scale.reshape([1, c, 1, 1])
}

/// Jᵀ·g of a bias-free "same"-padded convolution (weights as in the forward), back to `[h, w]`.
pub fn conv_transpose_of(conv: &Conv2d, g: Tensor<4>, input_hw: [usize; 2]) -> Tensor<4> {
    use burn::tensor::module::conv_transpose2d;
    use burn::tensor::ops::ConvTransposeOptions;
    let [_, _, ho, wo] = g.dims();
    let [kh, kw] = conv.kernel_size;
    let [sh, sw] = conv.stride;
    let (ph, pw) = (kh / 2, kw / 2);
    let out = |o: usize, s: usize, k: usize, p: usize, i: usize| {
        i.saturating_sub((o - 1) * s + k - 2 * p)
    };
    let options = ConvTransposeOptions::new(
        [sh, sw],
        [ph, pw],
        [
            out(ho, sh, kh, ph, input_hw[0]),
            out(wo, sw, kw, pw, input_hw[1]),
        ],
        conv.dilation,
        conv.groups,
    );
    conv_transpose2d(g, conv.weight.val(), None, options)
}

/// Jᵀ·g of a 2×2, stride-2 max-pool at input `x`: each gradient goes to the maximum of its window.
pub fn max_pool2_transpose(x: Tensor<4>, pooled: Tensor<4>, g: Tensor<4>) -> Tensor<4> {
    let up = |t: Tensor<4>| {
        let [b, c, h, w] = t.dims();
        t.reshape([b, c, h, 1, w, 1])
            .repeat_dim(3, 2)
            .repeat_dim(5, 2)
            .reshape([b, c, h * 2, w * 2])
    };
    let [_, _, h, w] = x.dims();
    let mask = x.detach().equal(up(pooled.detach())).float();
    let routed = up(g) * mask;
    let [b, c, h2, w2] = routed.dims();
    if (h2, w2) == (h, w) {
        routed
    } else {
        // Odd sizes: the last row/column was not pooled.
        routed
            .slice([0..b, 0..c, 0..h.min(h2), 0..w.min(w2)])
            .pad((0, w - w.min(w2), 0, h - h.min(h2)), 0.0)
    }
}

impl BasicBlock {
    /// Guided backprop through the block as a differentiable function of its weights; `frozen`
    /// is the same block in inference mode (the masks come from it).
    pub fn guided_transpose(&self, frozen: &BasicBlock, x: Tensor<4>, g: Tensor<4>) -> Tensor<4> {
        let x = x.detach();
        let [_, _, h, w] = x.dims();
        let z1 = frozen.bn1.forward(frozen.conv1.forward(x.clone())).detach();
        let a1 = relu(z1.clone());
        let [_, _, h1, w1] = a1.dims();
        let z2 = (frozen.branch_tail(a1) + frozen.identity(x.clone())).detach();
        let g = guided(g, z2);
        let g_short = match &self.shortcut {
            Some(s) => conv_transpose_of(&s.conv, bn_transpose(&s.bn, g.clone()), [h, w]),
            None => g.clone(),
        };
        let g_branch = conv_transpose_of(&self.conv2, bn_transpose(&self.bn2, g), [h1, w1]);
        let g_branch = guided(g_branch, z1);
        let g_branch = conv_transpose_of(&self.conv1, bn_transpose(&self.bn1, g_branch), [h, w]);
        g_short + g_branch
    }
}

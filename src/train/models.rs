//! The segmentation networks: a 3D U-Net after RadIO's Keras3DUNet and a V-Net after
//! Milletari et al. (2016), both `[B, 1, D, H, W]` in, sigmoid probabilities out, with a
//! width multiplier so tests can train tiny ones.

use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PRelu, PReluConfig, PaddingConfig3d};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};

/// Channels after the width multiplier (at least 1).
fn ch(base: usize, width: f64) -> usize {
    ((base as f64 * width).round() as usize).max(1)
}

/// conv 3x3x3 (same) + batch norm + ReLU.
#[derive(Module, Debug)]
pub struct ConvBnRelu<B: Backend> {
    conv: Conv3d<B>,
    bn: BatchNorm<B>,
}

impl<B: Backend> ConvBnRelu<B> {
    fn new(cin: usize, cout: usize, device: &B::Device) -> Self {
        ConvBnRelu {
            conv: Conv3dConfig::new([cin, cout], [3, 3, 3]).with_padding(PaddingConfig3d::Explicit(1, 1, 1)).init(device),
            bn: BatchNormConfig::new(cout).init(device),
        }
    }
    fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        relu(self.bn.forward(self.conv.forward(x)))
    }
}

/// Two [`ConvBnRelu`].
#[derive(Module, Debug)]
pub struct DoubleConv<B: Backend> {
    a: ConvBnRelu<B>,
    b: ConvBnRelu<B>,
}

impl<B: Backend> DoubleConv<B> {
    fn new(cin: usize, cout: usize, device: &B::Device) -> Self {
        DoubleConv { a: ConvBnRelu::new(cin, cout, device), b: ConvBnRelu::new(cout, cout, device) }
    }
    fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        self.b.forward(self.a.forward(x))
    }
}

/// 2x2x2 max pooling (Burn has no 3D pooling module; this is a reshape and three maxima).
pub fn max_pool2<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 5> {
    let [b, c, d, h, w] = x.dims();
    x.reshape([b, c, d / 2, 2, h / 2, 2, w / 2, 2]).max_dim(7).max_dim(5).max_dim(3).reshape([b, c, d / 2, h / 2, w / 2])
}

/// The 3D U-Net: four levels of two 3x3x3 conv+BN+ReLU with filters 32-64-128-256
/// (times `width`), 2x2x2 max pooling, a 512 bottleneck, transposed-convolution
/// up-sampling with skip connections, and a 1x1x1 convolution to one sigmoid channel.
/// Patch sides must be divisible by 16.
#[derive(Module, Debug)]
pub struct UNet3d<B: Backend> {
    down: Vec<DoubleConv<B>>,
    bottleneck: DoubleConv<B>,
    up: Vec<ConvTranspose3d<B>>,
    dec: Vec<DoubleConv<B>>,
    out: Conv3d<B>,
}

impl<B: Backend> UNet3d<B> {
    /// A U-Net with channels multiplied by `width` (1.0 = RadIO's 32-64-128-256-512).
    pub fn new(width: f64, device: &B::Device) -> Self {
        let f: Vec<usize> = [32, 64, 128, 256].iter().map(|&c| ch(c, width)).collect();
        let fb = ch(512, width);
        let mut down = Vec::new();
        let mut cin = 1;
        for &c in &f {
            down.push(DoubleConv::new(cin, c, device));
            cin = c;
        }
        let bottleneck = DoubleConv::new(cin, fb, device);
        let (mut up, mut dec) = (Vec::new(), Vec::new());
        let mut cprev = fb;
        for &c in f.iter().rev() {
            up.push(ConvTranspose3dConfig::new([cprev, c], [2, 2, 2]).with_stride([2, 2, 2]).init(device));
            dec.push(DoubleConv::new(2 * c, c, device));
            cprev = c;
        }
        let out = Conv3dConfig::new([cprev, 1], [1, 1, 1]).init(device);
        UNet3d { down, bottleneck, up, dec, out }
    }

    /// Probabilities `[B, 1, D, H, W]` for `x` `[B, 1, D, H, W]`.
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let mut skips = Vec::new();
        let mut x = x;
        for d in &self.down {
            x = d.forward(x);
            skips.push(x.clone());
            x = max_pool2(x);
        }
        x = self.bottleneck.forward(x);
        for (u, d) in self.up.iter().zip(&self.dec) {
            let skip = skips.pop().expect("one skip per level");
            x = d.forward(Tensor::cat(vec![u.forward(x), skip], 1));
        }
        sigmoid(self.out.forward(x))
    }
}

/// A V-Net stage: `n` 5x5x5 convolutions, each with batch norm and PReLU, added to the
/// stage's input.
#[derive(Module, Debug)]
pub struct ResStage<B: Backend> {
    convs: Vec<Conv3d<B>>,
    norms: Vec<BatchNorm<B>>,
    acts: Vec<PRelu<B>>,
}

impl<B: Backend> ResStage<B> {
    fn new(cin: usize, c: usize, n: usize, device: &B::Device) -> Self {
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut acts = Vec::new();
        for i in 0..n {
            let input = if i == 0 { cin } else { c };
            convs.push(Conv3dConfig::new([input, c], [5, 5, 5]).with_padding(PaddingConfig3d::Explicit(2, 2, 2)).init(device));
            norms.push(BatchNormConfig::new(c).init(device));
            acts.push(PReluConfig::new().init(device));
        }
        ResStage { convs, norms, acts }
    }
    /// `residual` is added before the last activation, as in the paper.
    fn forward(&self, x: Tensor<B, 5>, residual: Tensor<B, 5>) -> Tensor<B, 5> {
        let n = self.convs.len();
        let mut y = x;
        for (i, ((c, bn), a)) in self.convs.iter().zip(&self.norms).zip(&self.acts).enumerate() {
            y = bn.forward(c.forward(y));
            if i + 1 == n {
                y = y + residual.clone();
            }
            y = a.forward(y);
        }
        y
    }
}

/// V-Net: 5x5x5 convolutions in residual stages of 1, 2, 3, 3 convolutions (16-32-64-128
/// channels times `width`) and a 256 bottleneck of 3, PReLU, down-sampling by 2x2x2
/// stride-2 convolutions, up-sampling by transposed convolutions, skip concatenation,
/// and a 1x1x1 convolution to one sigmoid channel (the paper's two-channel softmax, for
/// one class). Unlike the paper, and like MONAI's VNet, each convolution is followed by
/// batch norm: without it the tiny network did not learn on streamed patches. Patch
/// sides must be divisible by 16.
#[derive(Module, Debug)]
pub struct VNet<B: Backend> {
    stages: Vec<ResStage<B>>,
    downs: Vec<Conv3d<B>>,
    down_acts: Vec<PRelu<B>>,
    bottom: ResStage<B>,
    ups: Vec<ConvTranspose3d<B>>,
    up_acts: Vec<PRelu<B>>,
    dec: Vec<ResStage<B>>,
    out: Conv3d<B>,
    base: usize,
}

impl<B: Backend> VNet<B> {
    /// A V-Net with channels multiplied by `width` (1.0 = 16-32-64-128-256).
    pub fn new(width: f64, device: &B::Device) -> Self {
        let c: Vec<usize> = [16, 32, 64, 128].iter().map(|&v| ch(v, width)).collect();
        let cb = ch(256, width);
        let convs = [1, 2, 3, 3];
        let mut stages = Vec::new();
        let mut downs = Vec::new();
        let mut down_acts = Vec::new();
        for (i, (&ci, &n)) in c.iter().zip(&convs).enumerate() {
            let cin = if i == 0 { 1 } else { ci };
            stages.push(ResStage::new(cin, ci, n, device));
            let next = if i + 1 < c.len() { c[i + 1] } else { cb };
            downs.push(Conv3dConfig::new([ci, next], [2, 2, 2]).with_stride([2, 2, 2]).init(device));
            down_acts.push(PReluConfig::new().init(device));
        }
        let bottom = ResStage::new(cb, cb, 3, device);
        let (mut ups, mut up_acts, mut dec) = (Vec::new(), Vec::new(), Vec::new());
        let mut cprev = cb;
        for (&ci, &n) in c.iter().zip(&convs).rev() {
            ups.push(ConvTranspose3dConfig::new([cprev, ci], [2, 2, 2]).with_stride([2, 2, 2]).init(device));
            up_acts.push(PReluConfig::new().init(device));
            dec.push(ResStage::new(2 * ci, ci, n.max(1), device));
            cprev = ci;
        }
        let out = Conv3dConfig::new([cprev, 1], [1, 1, 1]).init(device);
        VNet { stages, downs, down_acts, bottom, ups, up_acts, dec, out, base: c[0] }
    }

    /// Probabilities `[B, 1, D, H, W]` for `x` `[B, 1, D, H, W]`.
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let mut skips = Vec::new();
        // The input stage's residual: the one input channel repeated to the stage's width.
        let mut y = {
            let residual = x.clone().repeat_dim(1, self.base);
            self.stages[0].forward(x, residual)
        };
        for i in 0..self.stages.len() {
            if i > 0 {
                y = self.stages[i].forward(y.clone(), y);
            }
            skips.push(y.clone());
            y = self.down_acts[i].forward(self.downs[i].forward(y));
        }
        y = self.bottom.forward(y.clone(), y);
        for ((u, a), d) in self.ups.iter().zip(&self.up_acts).zip(&self.dec) {
            let up = a.forward(u.forward(y));
            let skip = skips.pop().expect("one skip per level");
            y = d.forward(Tensor::cat(vec![up.clone(), skip], 1), up);
        }
        sigmoid(self.out.forward(y))
    }
}

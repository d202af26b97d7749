//! The segmentation networks: a 3D U-Net after RadIO's Keras3DUNet and a V-Net after
//! Milletari et al. (2016), both `[B, 1, D, H, W]` in, sigmoid probabilities out, with a
//! width multiplier so tests can train tiny ones.

use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PRelu, PReluConfig, PaddingConfig3d};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};

/// Trainable values of `module` on an autodiff backend: what PyTorch's
/// `sum(p.numel() for p in net.parameters())` counts. Burn's `num_params` also counts
/// the batch norms' running mean and variance (two values per channel), which are state,
/// not parameters; on a backend without autodiff this is 0.
pub fn trainable_params<B: Backend, M: Module<B>>(module: &M) -> usize {
    struct Count(usize);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
            let t = p.val();
            if t.is_require_grad() {
                self.0 += t.shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    module.visit(&mut c);
    c.0
}

/// Batch norm over `[B, C, D, H, W]` with `bn`'s weights and running statistics, as
/// Burn's `BatchNorm::forward` computes it (batch statistics with the biased variance and
/// the running averages updated when training, the running statistics otherwise), in
/// fewer passes over the activations: the statistics are sums along one axis at a time
/// (no transposed copy), the centred input is computed once and scaled by one
/// per-channel factor, and at inference the norm is one multiply and one add.
fn batch_norm<B: Backend>(bn: &BatchNorm<B>, x: Tensor<B, 5>) -> Tensor<B, 5> {
    let [b, c, d, h, w] = x.dims();
    // Per-channel values as [B, C, 1, 1, 1], repeated over the batch (B x C values): flex
    // multiplies and adds such a tensor with its SIMD per-row kernel, where a [1, C, 1, 1,
    // 1] one takes its element-by-element strided path.
    let per_channel = |t: Tensor<B, 1>| t.reshape([1, c, 1, 1, 1]).repeat_dim(0, b);
    if B::ad_enabled(&x.device()) {
        let n = (b * d * h * w) as f64;
        let sum = |t: Tensor<B, 5>| t.sum_dim(4).sum_dim(3).sum_dim(2).sum_dim(0);
        let mean = sum(x.clone()).div_scalar(n);
        let centred = x - mean.clone().repeat_dim(0, b);
        let var = sum(centred.clone().square()).div_scalar(n);
        let m = bn.momentum;
        let running = |state: &burn::module::RunningState<Tensor<B, 1>>, batch: Tensor<B, 5>| {
            let value = state.value_sync().to_device(&batch.device());
            state.update(
                value.mul_scalar(1.0 - m).add(batch.detach().mul_scalar(m).reshape([c])).detach(),
            );
        };
        running(&bn.running_mean, mean);
        running(&bn.running_var, var.clone());
        let scale = per_channel(bn.gamma.val()) / var.add_scalar(bn.epsilon).sqrt();
        centred * scale + per_channel(bn.beta.val())
    } else {
        let device = x.device();
        let (mean, var) =
            (bn.running_mean.value().to_device(&device), bn.running_var.value().to_device(&device));
        let scale = bn.gamma.val() / var.add_scalar(bn.epsilon).sqrt();
        let shift = bn.beta.val() - mean * scale.clone();
        x * per_channel(scale) + per_channel(shift)
    }
}

/// `batch_norm(bn, conv.forward(x))`. At inference (no autodiff) it is one convolution
/// with the batch norm folded in, as PyTorch's `fuse_conv_bn_eval` folds it: weights
/// scaled per output channel by `gamma / sqrt(var + eps)`, bias `beta + (bias - mean)
/// scale`, so the activations are not passed over twice more (on flex the broadcast
/// multiply and add of the norm took a fifth of a prediction's time).
fn conv_bn<B: Backend>(conv: &Conv3d<B>, bn: &BatchNorm<B>, x: Tensor<B, 5>) -> Tensor<B, 5> {
    let device = x.device();
    if B::ad_enabled(&device) {
        return batch_norm(bn, conv.forward(x));
    }
    let (mean, var) =
        (bn.running_mean.value().to_device(&device), bn.running_var.value().to_device(&device));
    let scale = bn.gamma.val() / var.add_scalar(bn.epsilon).sqrt();
    let c = scale.dims()[0];
    let bias = conv.bias.as_ref().map_or_else(|| mean.zeros_like(), |b| b.val());
    let shift = bn.beta.val() + (bias - mean) * scale.clone();
    let fused = Conv3d {
        weight: burn::module::Param::from_tensor(
            conv.weight.val() * scale.reshape([c, 1, 1, 1, 1]),
        ),
        bias: Some(burn::module::Param::from_tensor(shift)),
        ..conv.clone()
    };
    fused.forward(x)
}

/// PReLU with one shared slope: `x` where `x >= 0`, `alpha x` elsewhere, written out (a
/// mask and a multiply) rather than through `PRelu::forward`, whose LibTorch kernel in
/// burn-tch 0.21 hands torch a 5-D weight that torch refuses. The weights are the
/// module's, so checkpoints are unchanged.
fn prelu<B: Backend>(act: &PRelu<B>, x: Tensor<B, 5>) -> Tensor<B, 5> {
    let alpha = act.alpha.val().reshape([1, 1, 1, 1, 1]);
    let negative = x.clone().lower_elem(0.0);
    x.clone().mask_where(negative, x * alpha)
}

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
            conv: Conv3dConfig::new([cin, cout], [3, 3, 3])
                .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
                .init(device),
            bn: BatchNormConfig::new(cout).init(device),
        }
    }
    fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        relu(conv_bn(&self.conv, &self.bn, x))
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

/// 2x2x2 max pooling. Burn has no 3D pooling: this is a 2D max pooling of every (H, W)
/// plane (one kernel, with its own backward, on every backend) and a maximum over pairs
/// of planes (fewer passes than three reshaped maxima).
pub fn max_pool2<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 5> {
    let [b, c, d, h, w] = x.dims();
    let planes = burn::tensor::module::max_pool2d(
        x.reshape([b, c * d, h, w]),
        [2, 2],
        [2, 2],
        [0, 0],
        [1, 1],
        false,
    );
    planes.reshape([b, c, d / 2, 2, h / 2, w / 2]).max_dim(3).reshape([b, c, d / 2, h / 2, w / 2])
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
            up.push(
                ConvTranspose3dConfig::new([cprev, c], [2, 2, 2])
                    .with_stride([2, 2, 2])
                    .init(device),
            );
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
            convs.push(
                Conv3dConfig::new([input, c], [5, 5, 5])
                    .with_padding(PaddingConfig3d::Explicit(2, 2, 2))
                    .init(device),
            );
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
            y = conv_bn(c, bn, y);
            if i + 1 == n {
                y = y + residual.clone();
            }
            y = prelu(a, y);
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
            downs
                .push(Conv3dConfig::new([ci, next], [2, 2, 2]).with_stride([2, 2, 2]).init(device));
            down_acts.push(PReluConfig::new().init(device));
        }
        let bottom = ResStage::new(cb, cb, 3, device);
        let (mut ups, mut up_acts, mut dec) = (Vec::new(), Vec::new(), Vec::new());
        let mut cprev = cb;
        for (&ci, &n) in c.iter().zip(&convs).rev() {
            ups.push(
                ConvTranspose3dConfig::new([cprev, ci], [2, 2, 2])
                    .with_stride([2, 2, 2])
                    .init(device),
            );
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
            y = prelu(&self.down_acts[i], self.downs[i].forward(y));
        }
        y = self.bottom.forward(y.clone(), y);
        for ((u, a), d) in self.ups.iter().zip(&self.up_acts).zip(&self.dec) {
            let up = prelu(a, u.forward(y));
            let skip = skips.pop().expect("one skip per level");
            y = d.forward(Tensor::cat(vec![up.clone(), skip], 1), up);
        }
        sigmoid(self.out.forward(y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::CpuBackend;
    use burn::module::AutodiffModule;

    /// The U-Net at width 0.25 (filters 8-16-32-64, bottleneck 128), counted by hand:
    /// a DoubleConv(cin, c) has 27 c (cin + c) weights, 2 c biases and 4 c batch-norm
    /// parameters; a ConvTranspose3d(cin, c) 8 cin c + c; the output conv c + 1.
    /// Down 1992 + 10464 + 41664 + 166272, bottleneck 664320, up 65600 + 332160 + 16416 +
    /// 83136 + 4112 + 20832 + 1032 + 5232, out 9: 1413241 (PyTorch's twin agrees, see
    /// tests/integration/train.rs).
    #[test]
    fn the_unet_has_the_parameters_counted_by_hand() {
        let device = Default::default();
        let net = UNet3d::<CpuBackend>::new(0.25, &device);
        assert_eq!(trainable_params(&net), 1_413_241);
        // Burn's own count adds two running statistics per batch-norm channel: 736 channels.
        assert_eq!(net.num_params(), 1_413_241 + 2 * 736);
    }

    fn tensor<B: Backend>(v: Vec<f32>, shape: [usize; 5]) -> Tensor<B, 5> {
        Tensor::from_data(burn::tensor::TensorData::new(v, shape), &Default::default())
    }

    fn values<B: Backend>(t: Tensor<B, 5>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
    }

    /// Each output voxel is the largest of its 2x2x2 block, found here by a plain loop.
    #[test]
    fn max_pool2_takes_each_blocks_maximum() {
        let shape = [2, 3, 4, 6, 8];
        let n: usize = shape.iter().product();
        // A fixed permutation of 0..n (multiplier coprime with n), so maxima fall anywhere.
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919) % n) as f32).collect();
        let got = values(max_pool2(tensor::<burn::backend::Flex>(v.clone(), shape)));
        let [b, c, d, h, w] = shape;
        let mut want = Vec::new();
        for (bi, ci, z, y, x) in (0..b).flat_map(|bi| {
            (0..c).flat_map(move |ci| {
                (0..d / 2).flat_map(move |z| {
                    (0..h / 2).flat_map(move |y| (0..w / 2).map(move |x| (bi, ci, z, y, x)))
                })
            })
        }) {
            let mut m = f32::MIN;
            for (dz, dy, dx) in
                (0..2).flat_map(|dz| (0..2).flat_map(move |dy| (0..2).map(move |dx| (dz, dy, dx))))
            {
                m = m.max(v[(((bi * c + ci) * d + 2 * z + dz) * h + 2 * y + dy) * w + 2 * x + dx]);
            }
            want.push(m);
        }
        assert_eq!(got, want);
    }

    /// At inference the folded convolution gives what the convolution followed by the
    /// batch norm gives (non-trivial running statistics, gamma and beta, with and without
    /// a convolution bias).
    #[test]
    fn folded_conv_bn_equals_conv_then_batch_norm() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let shape = [2, 3, 6, 5, 7];
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 13.0).collect();
        let vec1 = |v: [f32; 4]| Tensor::<B, 1>::from_floats(v, &device);
        for bias in [true, false] {
            let conv = Conv3dConfig::new([3, 4], [3, 3, 3])
                .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
                .with_bias(bias)
                .init::<B>(&device);
            let bn = BatchNormConfig::new(4).init::<B>(&device);
            let bn = BatchNorm {
                gamma: burn::module::Param::from_tensor(vec1([1.5, -0.5, 2.0, 0.7])),
                beta: burn::module::Param::from_tensor(vec1([0.1, 0.2, -0.3, 1.1])),
                ..bn
            };
            bn.running_mean.update(vec1([0.3, -1.2, 0.05, 2.0]));
            bn.running_var.update(vec1([0.5, 2.5, 0.01, 1.7]));
            let want = values(batch_norm(&bn, conv.forward(tensor::<B>(v.clone(), shape))));
            let got = values(conv_bn(&conv, &bn, tensor::<B>(v.clone(), shape)));
            let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(
                scale > 1.0 && d <= 1e-5 * scale,
                "bias {bias}: differs by {d} (scale {scale})"
            );
        }
    }

    /// The written-out batch norm gives what Burn's `BatchNorm::forward` gives, training
    /// (batch statistics, running averages) and at inference (running statistics).
    #[test]
    fn batch_norm_equals_burns() {
        let shape = [2, 3, 4, 4, 4];
        let n: usize = shape.iter().product();
        let v: Vec<f32> =
            (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0 + (i % 3) as f32).collect();
        let device = Default::default();
        let ours = BatchNormConfig::new(3).init::<CpuBackend>(&device);
        let gamma = Tensor::<CpuBackend, 1>::from_floats([1.5, -0.5, 2.0], &device);
        let beta = Tensor::<CpuBackend, 1>::from_floats([0.1, 0.2, -0.3], &device);
        let ours = BatchNorm {
            gamma: burn::module::Param::from_tensor(gamma),
            beta: burn::module::Param::from_tensor(beta),
            ..ours
        };
        let burns = ours.clone();
        let close = |what: &str, a: Vec<f32>, b: Vec<f32>| {
            let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(d <= 2e-5, "{what}: differs by {d}");
        };
        for _ in 0..2 {
            close(
                "training",
                values(batch_norm(&ours, tensor::<CpuBackend>(v.clone(), shape))),
                values(burns.forward(tensor::<CpuBackend>(v.clone(), shape))),
            );
        }
        let stat = |s: &burn::module::RunningState<Tensor<CpuBackend, 1>>| {
            s.value_sync().into_data().convert::<f32>().to_vec::<f32>().unwrap()
        };
        close("running mean", stat(&ours.running_mean), stat(&burns.running_mean));
        close("running variance", stat(&ours.running_var), stat(&burns.running_var));
        let (ours, burns) = (ours.valid(), burns.valid());
        close(
            "inference",
            values(batch_norm(&ours, tensor(v.clone(), shape))),
            values(burns.forward(tensor(v, shape))),
        );
    }
}

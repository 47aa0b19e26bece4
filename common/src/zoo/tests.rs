//! Catalogue tests: hand-derived parameter counts, smallest sizes, factors, and each
//! preset's layer list against the seed's `forward()`.

use super::*;
use crate::arch::{analyse, Activation, Architecture, DropoutImpl, InitScheme, Layer, PoolKind};
use crate::spec::{ActivationName, HeadKind, KernelKind, ModelFactors};

fn none() -> ModelFactors {
    ModelFactors::default()
}

fn seed_model(name: &str) -> Architecture {
    build(name, &none(), 3, 224, 16).unwrap()
}

fn params(name: &str) -> u64 {
    analyse(&seed_model(name)).unwrap().params
}

/// A compact rendering of a layer list: `c64k5p2` (conv 64, 5×5, pad 2; `s2` stride,
/// `nb` no bias), `sig`/`tanh`/`relu`/`lrelu0.02`, `bn`, `mp2/2` (`ap` avg, `p1` pad), `gap`,
/// `flat`, `fc16`, `drop0.5` (`drop0.5t` torch), `cat[a | b]`, `res(body ; shortcut)`.
fn sig(layers: &[Layer]) -> String {
    layers.iter().map(sig_one).collect::<Vec<_>>().join(" ")
}

fn sig_one(layer: &Layer) -> String {
    match layer {
        Layer::Conv(c) => {
            let mut s = format!("c{}k{}", c.out, c.kernel);
            if c.stride != 1 {
                s += &format!("s{}", c.stride);
            }
            if c.padding != 0 {
                s += &format!("p{}", c.padding);
            }
            if !c.bias {
                s += "nb";
            }
            s
        }
        Layer::BatchNorm => "bn".into(),
        Layer::Act(Activation::Sigmoid) => "sig".into(),
        Layer::Act(Activation::Tanh) => "tanh".into(),
        Layer::Act(Activation::Relu) => "relu".into(),
        Layer::Act(Activation::LeakyRelu { slope }) => format!("lrelu{slope}"),
        Layer::Pool(p) => {
            let kind = if p.kind == PoolKind::Max { "mp" } else { "ap" };
            let pad = if p.padding == 0 {
                String::new()
            } else {
                format!("p{}", p.padding)
            };
            format!("{kind}{}/{}{pad}", p.kernel, p.stride)
        }
        Layer::GlobalAvgPool => "gap".into(),
        Layer::Flatten => "flat".into(),
        Layer::Linear { out } => format!("fc{out}"),
        Layer::Dropout { p, implementation } => match implementation {
            DropoutImpl::Paddle => format!("drop{p}"),
            DropoutImpl::Torch => format!("drop{p}t"),
        },
        Layer::Concat(branches) => {
            let b: Vec<String> = branches.iter().map(|b| sig(b)).collect();
            format!("cat[{}]", b.join(" | "))
        }
        Layer::Residual { body, shortcut } => format!("res({} ; {})", sig(body), sig(shortcut)),
    }
}

#[test]
fn names_are_the_catalogue() {
    assert_eq!(
        names(),
        [
            "lenet",
            "alexnet",
            "vgg13",
            "vgg16",
            "vgg19",
            "vgg13_bn",
            "googlenet",
            "googlenet_bn",
            "cnn_sigmoid",
            "cnn_baseline",
            "cnn_leakyrelu",
            "cnn_poolreplacefc",
            "cnn_dropout",
            "cnn_coresize3",
            "cnn_concatconv",
            "cnn_alltricks",
            "cnn",
            "resnet18",
            "resnet34",
        ]
    );
    for name in names() {
        assert!(!describe(name).unwrap().is_empty(), "{name}");
    }
    assert_eq!(describe("resnet50"), None);
}

#[test]
fn lenet_params() {
    // conv1 3→6 k5:     6·3·25 + 6           =        456
    // conv2 6→16 k5:    16·6·25 + 16         =      2,416
    // conv3 16→120 k4:  120·16·16 + 120      =     30,840
    // fc1 120·50·50→84: 300,000·84 + 84      = 25,200,084
    // fc2 84→16:        84·16 + 16           =      1,360
    //                                  total   25,235,156
    assert_eq!(params("lenet"), 25_235_156);
}

#[test]
fn alexnet_params() {
    // conv1 3→96 k11:    96·3·121 + 96        =     34,944
    // conv2 96→256 k5:   256·96·25 + 256      =    614,656
    // conv3 256→384 k3:  384·256·9 + 384      =    885,120
    // conv4 384→384 k3:  384·384·9 + 384      =  1,327,488
    // conv5 384→256 k3:  256·384·9 + 256      =    884,992
    // fc1 256·6·6→4096:  9,216·4,096 + 4,096  = 37,752,832
    // fc2 4096→4096:     4,096² + 4,096       = 16,781,312
    // fc3 4096→16:       4,096·16 + 16        =     65,552
    //                                   total   58,346,896
    assert_eq!(params("alexnet"), 58_346_896);
}

#[test]
fn vgg13_params() {
    // block 1: 3→64: 1,728 + 64 = 1,792;          64→64: 36,864 + 64 = 36,928
    // block 2: 64→128: 73,728 + 128 = 73,856;     128→128: 147,456 + 128 = 147,584
    // block 3: 128→256: 294,912 + 256 = 295,168;  256→256: 589,824 + 256 = 590,080
    // block 4: 256→512: 1,179,648 + 512 = 1,180,160; 512→512: 2,359,296 + 512 = 2,359,808
    // block 5: 2 × 2,359,808 = 4,719,616                    convs: 9,404,992
    // fc1 512·7·7→4096: 25,088·4,096 + 4,096 = 102,764,544
    // fc2: 16,781,312; fc3: 65,552                          fcs: 119,611,408
    //                                                      total 129,016,400
    assert_eq!(params("vgg13"), 129_016_400);
    // VGG_BN adds BN(128) and BN(512): 2·128 + 2·512 = 1,280.
    assert_eq!(params("vgg13_bn"), 129_016_400 + 1_280);
    // torchvision's VGG-16/19 (138,357,544 / 143,667,240 at 1000 classes) with a 16-class
    // fc3: − (4,096·1,000 + 1,000) + 65,552.
    assert_eq!(params("vgg16"), 138_357_544 - 4_097_000 + 65_552);
    assert_eq!(params("vgg19"), 143_667_240 - 4_097_000 + 65_552);
}

#[test]
fn googlenet_params() {
    // Inception(in; c1; r3→c3; r5→c5; pp) =
    //   (in·c1 + c1) + (in·r3 + r3 + r3·c3·9 + c3) + (in·r5 + r5 + r5·c5·25 + c5) + (in·pp + pp)
    // 3a (192; 64; 96→128; 16→32; 32)       =   163,696
    // 3b (256; 128; 128→192; 32→96; 64)     =   388,736
    // 4a (480; 192; 96→208; 16→48; 64)      =   376,176
    // 4b (512; 160; 112→224; 24→64; 64)     =   449,160
    // 4c (512; 128; 128→256; 24→64; 64)     =   510,104
    // 4d (512; 112; 144→288; 32→64; 64)     =   605,376
    // 4e (528; 256; 160→320; 32→128; 128)   =   868,352
    // 5a (832; 256; 160→320; 32→128; 128)   = 1,043,456
    // 5b (832; 384; 192→384; 48→128; 128)   = 1,444,080
    //                                 blocks  5,849,136
    // stem: conv 3→64 k7: 9,408 + 64 = 9,472; 64→64 k1: 4,160; 64→192 k3: 110,592 + 192
    //       = 110,784                           124,416
    // fc 1024→16: 16,400                         16,400
    //                                  total  5,989,952
    assert_eq!(params("googlenet"), 5_989_952);
    // GoogLeNet_BN: BN(64) + BN(480) + BN(1024) = 2·(64 + 480 + 1024) = 3,136.
    assert_eq!(params("googlenet_bn"), 5_989_952 + 3_136);
}

#[test]
fn cnn_alltricks_params() {
    // k3 stages with BN: 3→64: 1,728 + 64 = 1,792;  64→128: 73,728 + 128 = 73,856;
    //   128→256: 294,912 + 256 = 295,168;  256→512: 1,179,648 + 512 = 1,180,160
    //   convs 1,550,976; BN 2·(64 + 128 + 256 + 512) = 1,920
    // ConcatConv(512; 384; 384→256; 256→256; 128):
    //   512·384 + 384 = 196,992;  512·384 + 384 + 384·256·9 + 256 = 1,081,984;
    //   512·256 + 256 + 256·256·25 + 256 = 1,769,984;  512·128 + 128 = 65,664
    //   = 3,114,624; BN(1024) 2,048
    // ConcatConv(1024; …): 393,600 + 1,278,592 + 1,901,056 + 131,200 = 3,704,448; BN 2,048
    // fc 1024→16: 16,400
    // total 1,550,976 + 1,920 + 3,114,624 + 2,048 + 3,704,448 + 2,048 + 16,400 = 8,392,464
    assert_eq!(params("cnn_alltricks"), 8_392_464);
}

#[test]
fn the_other_models_params() {
    // k5 family: convs 3→64 4,864; 64→128 204,928; 128→256 819,456; 256→512 3,277,312;
    // 512→1024 13,108,224; 1024→1024 26,215,424 = 43,630,208; fc1 50,176→1024
    // 51,381,248; fc2 16,400 → cnn_sigmoid 95,027,856; BN 2·(64+128+256+512+1024+1024)
    // = 6,016 more for the baseline.
    let baseline = 95_027_856 + 6_016;
    let expected = [
        ("cnn_sigmoid", 95_027_856),
        ("cnn_baseline", baseline),
        ("cnn_leakyrelu", baseline),
        // No hidden fc: − 51,381,248, fc2 1024→16 stays.
        ("cnn_poolreplacefc", baseline - 51_381_248),
        ("cnn_dropout", baseline),
        ("cnn_coresize3", 89_129_296),
        ("cnn_concatconv", 85_040_272),
        ("cnn", baseline),
        // torchvision's resnet18/34 (11,689,512 / 21,797,672 at 1000 classes) with a
        // 16-class fc: − 513,000 + 8,208.
        ("resnet18", 11_689_512 - 513_000 + 8_208),
        ("resnet34", 21_797_672 - 513_000 + 8_208),
    ];
    for (name, count) in expected {
        assert_eq!(params(name), count, "{name}");
    }
    // cnn_concatconv = baseline − conv5 k5 (13,108,224) + ConcatConv(512) (3,114,624).
    assert_eq!(params("cnn_concatconv"), baseline - 13_108_224 + 3_114_624);
}

#[test]
fn flops_count_multiply_accumulates_twice() {
    // LeNet at 224: conv1 220²·6·75, conv2 106²·16·150, conv3 50²·120·256,
    // fc1 300,000·84, fc2 84·16 multiply-accumulates.
    let macs: u64 =
        220 * 220 * 6 * 75 + 106 * 106 * 16 * 150 + 50 * 50 * 120 * 256 + 300_000 * 84 + 84 * 16;
    assert_eq!(analyse(&seed_model("lenet")).unwrap().flops, 2 * macs);
}

#[test]
fn smallest_sizes() {
    let expected = |name: &str| match name {
        "lenet" => 28,
        "alexnet" => 63,
        // Their stems pad every window, so any size passes.
        n if n.starts_with("googlenet") || n.starts_with("resnet") => 1,
        // Five 2×2 pools.
        _ => 32,
    };
    for &name in names() {
        let min = min_image_size(name, &none(), 3, 16).unwrap();
        assert_eq!(min, expected(name), "{name}");
        build(name, &none(), 3, min, 16).unwrap();
        if min > 1 {
            let err = build(name, &none(), 3, min - 1, 16).unwrap_err();
            assert!(
                matches!(err, ZooError::TooSmall { min: m, .. } if m == min),
                "{name}: {err}"
            );
        }
    }
}

#[test]
fn too_small_names_model_size_and_minimum() {
    let err = build("lenet", &none(), 3, 27, 16).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("lenet cannot take 27×27 images: the feature map vanishes at layers[6] (conv 4×4/1 p0 → 120): a 3×3 input gives no output"),
        "{msg}"
    );
    assert!(msg.ends_with("the smallest size is 28"), "{msg}");
    let err = build("cnn", &none(), 1, 31, 10).unwrap_err().to_string();
    assert!(
        err.contains("cnn cannot take 31×31") && err.contains("smallest size is 32"),
        "{err}"
    );
}

#[test]
fn bad_inputs_and_names() {
    let err = build("resnet50", &none(), 3, 224, 16).unwrap_err();
    assert!(matches!(err, ZooError::UnknownModel { .. }));
    assert!(err.to_string().contains("lenet, alexnet"), "{err}");
    assert!(matches!(
        build("lenet", &none(), 3, 224, 0).unwrap_err(),
        ZooError::InvalidInput { .. }
    ));
    assert!(matches!(
        min_image_size("lenet", &none(), 0, 16).unwrap_err(),
        ZooError::InvalidInput { .. }
    ));
}

#[test]
fn fixed_models_reject_family_factors() {
    let bn = ModelFactors {
        batch_norm: Some(true),
        ..none()
    };
    let err = build("lenet", &bn, 3, 224, 16).unwrap_err();
    assert_eq!(
        err.to_string(),
        "model `lenet` has no factor `batch_norm`; its factors are: dropout_impl, init, leaky_slope"
    );
    let act = ModelFactors {
        activation: Some(ActivationName::Relu),
        ..none()
    };
    assert!(matches!(
        build("resnet18", &act, 3, 64, 16).unwrap_err(),
        ZooError::UnsupportedFactor {
            factor: "activation",
            ..
        }
    ));
    assert_eq!(
        accepted_factors("vgg16").unwrap(),
        ["dropout_impl", "init", "leaky_slope"]
    );
    assert_eq!(accepted_factors("cnn_dropout").unwrap(), FACTOR_KEYS);
    // The factors they do have apply.
    let torch = ModelFactors {
        dropout_impl: Some(DropoutImpl::Torch),
        init: Some(InitScheme::Torch),
        leaky_slope: Some(0.1),
        ..none()
    };
    let a = build("alexnet", &torch, 3, 224, 16).unwrap();
    assert_eq!(a.init, InitScheme::Torch);
    assert!(sig(&a.layers).contains("drop0.5t fc4096 relu drop0.5t"));
}

#[test]
fn family_factor_values_are_checked() {
    for (factors, factor) in [
        (
            ModelFactors {
                dropout: Some(1.0),
                ..none()
            },
            "dropout",
        ),
        (
            ModelFactors {
                dropout: Some(-0.1),
                ..none()
            },
            "dropout",
        ),
        (
            ModelFactors {
                concat_stages: Some(vec![4]),
                ..none()
            },
            "concat_stages",
        ),
        (
            ModelFactors {
                leaky_slope: Some(f64::INFINITY),
                ..none()
            },
            "leaky_slope",
        ),
    ] {
        let err = build("cnn", &factors, 3, 32, 10).unwrap_err();
        assert!(
            matches!(err, ZooError::InvalidFactor { factor: f, .. } if f == factor),
            "{factor}: {err}"
        );
    }
}

/// `stage(conv, act, bn)`: the family's `conv → act [→ bn]`.
fn stage(conv: &str, act: &str, bn: bool) -> String {
    if bn {
        format!("{conv} {act} bn")
    } else {
        format!("{conv} {act}")
    }
}

/// The family's six k5 stages with pools, as in CNN / CNN_BaseLine.
fn k5_stages(act: &str, bn: bool) -> String {
    let s = |c: usize| stage(&format!("c{c}k5p2"), act, bn);
    format!(
        "{} mp2/2 {} mp2/2 {} mp2/2 {} mp2/2 {} mp2/2 {}",
        s(64),
        s(128),
        s(256),
        s(512),
        s(1024),
        s(1024)
    )
}

/// The seed's ConcatConv(…; 384; 384→256; 256→256; 128) with `act`.
fn concat_conv(act: &str) -> String {
    format!(
        "cat[c384k1 {a} | c384k1 {a} c256k3p1 {a} | c256k1 {a} c256k5p2 {a} | mp3/1p1 c128k1 {a}]",
        a = act
    )
}

#[test]
fn family_presets_follow_the_seed() {
    let fc_head = |act: &str| format!("flat fc1024 {act} fc16");
    let cases = [
        // CNN: conv → sigmoid, no BN; fc1 sigmoid; fc2.
        (
            "cnn_sigmoid",
            format!("{} {}", k5_stages("sig", false), fc_head("sig")),
        ),
        (
            "cnn_baseline",
            format!("{} {}", k5_stages("sig", true), fc_head("sig")),
        ),
        // CNN_LeakyRelu: leaky relu in the convs and in fc1.
        (
            "cnn_leakyrelu",
            format!("{} {}", k5_stages("lrelu0.02", true), fc_head("lrelu0.02")),
        ),
        // CNN_PoolReplaceFC: global pool, reshape, fc.
        (
            "cnn_poolreplacefc",
            format!("{} gap flat fc16", k5_stages("sig", true)),
        ),
        // CNN_DropOut: fc1 → dropout → fc2.
        (
            "cnn_dropout",
            format!("{} flat fc1024 sig drop0.5 fc16", k5_stages("sig", true)),
        ),
        // CNN_ConcatConv: block5 → bn5 → pool; conv6 k5 → bn6; fc1 → dropout → fc2.
        (
            "cnn_concatconv",
            format!(
                "{} mp2/2 {} mp2/2 {} mp2/2 {} mp2/2 {} bn mp2/2 {} flat fc1024 sig drop0.5 fc16",
                stage("c64k5p2", "sig", true),
                stage("c128k5p2", "sig", true),
                stage("c256k5p2", "sig", true),
                stage("c512k5p2", "sig", true),
                concat_conv("sig"),
                stage("c1024k5p2", "sig", true),
            ),
        ),
        // CNN_AllTricks: k3 leaky convs with BN; block5 → bn5 → pool; block6 → bn6;
        // global pool → reshape → dropout → fc.
        (
            "cnn_alltricks",
            format!(
                "{} mp2/2 {} mp2/2 {} mp2/2 {} mp2/2 {} bn mp2/2 {} bn gap flat drop0.5 fc16",
                stage("c64k3p1", "lrelu0.02", true),
                stage("c128k3p1", "lrelu0.02", true),
                stage("c256k3p1", "lrelu0.02", true),
                stage("c512k3p1", "lrelu0.02", true),
                concat_conv("lrelu0.02"),
                concat_conv("lrelu0.02"),
            ),
        ),
    ];
    for (name, expected) in cases {
        assert_eq!(sig(&seed_model(name).layers), expected, "{name}");
    }
    // CNN_CoreSize3: convN (c_{s-1}→c_s) → bnN → convN_2 (c_s→c_s) → bnN_2 per stage.
    let two = |c: usize| format!("c{c}k3p1 sig bn c{c}k3p1 sig bn");
    assert_eq!(
        sig(&seed_model("cnn_coresize3").layers),
        format!(
            "{} mp2/2 {} mp2/2 {} mp2/2 {} mp2/2 {} mp2/2 {} flat fc1024 sig fc16",
            two(64),
            two(128),
            two(256),
            two(512),
            two(1024),
            two(1024)
        )
    );
    for name in names().iter().filter(|n| n.starts_with("cnn")) {
        let a = seed_model(name);
        assert_eq!(a.init, InitScheme::Paddle, "{name}");
    }
    assert_eq!(
        seed_model("cnn"),
        Architecture {
            name: "cnn".into(),
            ..seed_model("cnn_baseline")
        }
    );
}

#[test]
fn classic_presets_follow_the_seed() {
    assert_eq!(
        sig(&seed_model("lenet").layers),
        "c6k5 sig mp2/2 c16k5 sig mp2/2 c120k4 sig flat fc84 sig fc16"
    );
    // Seed quirk kept: fc3 has act='relu'.
    assert_eq!(
        sig(&seed_model("alexnet").layers),
        "c96k11s4p2 relu mp3/2 c256k5p2 relu mp3/2 c384k3p1 relu c384k3p1 relu c256k3p1 relu \
         mp3/2 flat fc4096 relu drop0.5 fc4096 relu drop0.5 fc16 relu"
    );
    let c = |w: usize| format!("c{w}k3p1 relu");
    let vgg_head = "flat fc4096 relu drop0.5 fc4096 relu drop0.5 fc16";
    assert_eq!(
        sig(&seed_model("vgg13_bn").layers),
        format!(
            "{} {} mp2/2 {} {} bn mp2/2 {} {} mp2/2 {} bn {} mp2/2 {} {} mp2/2 {vgg_head}",
            c(64),
            c(64),
            c(128),
            c(128),
            c(256),
            c(256),
            c(512),
            c(512),
            c(512),
            c(512)
        )
    );
    assert_eq!(
        sig(&seed_model("vgg16").layers),
        format!(
            "{} {} mp2/2 {} {} mp2/2 {} {} {} mp2/2 {} {} {} mp2/2 {} {} {} mp2/2 {vgg_head}",
            c(64),
            c(64),
            c(128),
            c(128),
            c(256),
            c(256),
            c(256),
            c(512),
            c(512),
            c(512),
            c(512),
            c(512),
            c(512)
        )
    );
    let gbn = sig(&seed_model("googlenet_bn").layers);
    assert!(
        gbn.starts_with("c64k7s2p3 relu mp3/2p1 bn c64k1 relu c192k3p1 relu mp3/2p1 cat["),
        "{gbn}"
    );
    assert!(gbn.ends_with("gap bn drop0.4 flat fc16"), "{gbn}");
    assert_eq!(gbn.matches(" bn").count(), 3, "{gbn}");
    let g = sig(&seed_model("googlenet").layers);
    assert!(
        g.ends_with("gap drop0.4 flat fc16") && !g.contains("bn"),
        "{g}"
    );
    assert_eq!(g.matches("cat[").count(), 9);
    assert!(g.contains(
        "mp3/2p1 cat[c64k1 relu | c96k1 relu c128k3p1 relu | c16k1 relu c32k5p2 relu | mp3/1p1 c32k1 relu]"
    ));
    for name in ["lenet", "alexnet", "vgg19", "googlenet"] {
        assert_eq!(seed_model(name).init, InitScheme::Paddle, "{name}");
    }
}

#[test]
fn resnets_are_standard() {
    let a = seed_model("resnet18");
    assert_eq!(a.init, InitScheme::Torch);
    let s = sig(&a.layers);
    let plain = |c: usize| format!("res(c{c}k3p1nb bn relu c{c}k3p1nb bn ; ) relu");
    let down = |c: usize| format!("res(c{c}k3s2p1nb bn relu c{c}k3p1nb bn ; c{c}k1s2nb bn) relu");
    assert_eq!(
        s,
        format!(
            "c64k7s2p3nb bn relu mp3/2p1 {} {} {} {} {} {} {} {} gap flat fc16",
            plain(64),
            plain(64),
            down(128),
            plain(128),
            down(256),
            plain(256),
            down(512),
            plain(512)
        )
    );
    let blocks = seed_model("resnet34")
        .layers
        .iter()
        .filter(|l| matches!(l, Layer::Residual { .. }))
        .count();
    assert_eq!(blocks, 3 + 4 + 6 + 3);
}

#[test]
fn family_factors_combine_freely() {
    let f = ModelFactors {
        activation: Some(ActivationName::Relu),
        batch_norm: Some(false),
        kernel: Some(KernelKind::K3),
        concat_stages: Some(vec![6]),
        head: Some(HeadKind::Gap),
        dropout: Some(0.3),
        dropout_impl: Some(DropoutImpl::Torch),
        init: Some(InitScheme::Torch),
        leaky_slope: None,
    };
    let a = build("cnn", &f, 1, 32, 10).unwrap();
    assert_eq!(a.init, InitScheme::Torch);
    assert_eq!(
        sig(&a.layers),
        format!(
            "c64k3p1 relu mp2/2 c128k3p1 relu mp2/2 c256k3p1 relu mp2/2 c512k3p1 relu mp2/2 \
             c1024k3p1 relu mp2/2 {} gap flat drop0.3t fc10",
            concat_conv("relu")
        )
    );
    // leaky relu takes Paddle's 0.02 unless leaky_slope says otherwise; the slope reaches
    // the hidden fc too.
    let leaky = ModelFactors {
        activation: Some(ActivationName::LeakyRelu),
        ..none()
    };
    assert!(
        sig(&build("cnn", &leaky, 3, 32, 10).unwrap().layers).starts_with("c64k5p2 lrelu0.02 bn")
    );
    let slope = ModelFactors {
        leaky_slope: Some(0.1),
        ..none()
    };
    let s = sig(&build("cnn_leakyrelu", &slope, 3, 32, 10).unwrap().layers);
    assert!(
        !s.contains("0.02") && s.contains("fc1024 lrelu0.1 fc10"),
        "{s}"
    );
    // A slope alone does not change a sigmoid preset.
    assert_eq!(
        build("cnn_baseline", &slope, 3, 32, 10).unwrap().layers,
        build("cnn_baseline", &none(), 3, 32, 10).unwrap().layers
    );
    // dropout 0 removes the preset's dropout; an empty concat list removes its blocks.
    let plain = ModelFactors {
        dropout: Some(0.0),
        concat_stages: Some(vec![]),
        ..none()
    };
    assert_eq!(
        build("cnn_concatconv", &plain, 3, 32, 10).unwrap().layers,
        build("cnn_baseline", &none(), 3, 32, 10).unwrap().layers
    );
}

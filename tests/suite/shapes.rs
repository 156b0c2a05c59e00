//! Table tests of the shape rules and parameter counts (Keras's formulas).

use strata::compile::shapes::{output_shape, params, window_out, ShapeError};
use strata::ir::{Op, Padding, PoolKind, Shape};

#[test]
fn window_rule_table() {
    // (input, window, stride, pad, expected)
    let table = [
        (224, 2, 1, Padding::Valid, Some(223)),
        (223, 16, 16, Padding::Valid, Some(13)),
        (224, 2, 2, Padding::Valid, Some(112)),
        (7, 2, 2, Padding::Valid, Some(3)),
        (3, 2, 2, Padding::Valid, Some(1)),
        (1, 2, 2, Padding::Valid, None),
        (5, 5, 1, Padding::Valid, Some(1)),
        (224, 2, 1, Padding::Same, Some(224)),
        (7, 2, 2, Padding::Same, Some(4)),
        (1, 2, 2, Padding::Same, Some(1)),
        (1, 5, 1, Padding::Same, Some(1)),
        (28, 3, 3, Padding::Same, Some(10)),
        (28, 3, 3, Padding::Valid, Some(9)),
    ];
    for (input, window, stride, pad, expected) in table {
        assert_eq!(
            window_out(input, window, stride, pad),
            expected,
            "in {input} k {window} s {stride} {pad:?}"
        );
    }
}

fn image(height: usize, width: usize, channels: usize) -> Shape {
    Shape::Image {
        height,
        width,
        channels,
    }
}

#[test]
fn layer_shape_and_param_table() {
    let conv = |filters, kernel, stride, pad, bias| Op::Conv {
        filters,
        kernel,
        stride,
        pad,
        bias,
        groups: 1,
    };
    let pool = |kind, size, stride, pad| Op::Pool {
        kind,
        size,
        stride,
        pad,
    };
    // (op, input, output, trainable, non-trainable)
    let table = [
        (
            Op::BatchNorm {
                momentum: 0.99,
                eps: 1e-3,
            },
            image(224, 224, 3),
            image(224, 224, 3),
            6,
            6,
        ),
        (
            Op::BatchNorm {
                momentum: 0.99,
                eps: 1e-3,
            },
            Shape::Flat(10),
            Shape::Flat(10),
            20,
            20,
        ),
        (
            conv(100, (2, 2), (1, 1), Padding::Valid, true),
            image(224, 224, 3),
            image(223, 223, 100),
            1300,
            0,
        ),
        (
            conv(20, (2, 2), (1, 1), Padding::Same, true),
            image(112, 112, 20),
            image(112, 112, 20),
            1620,
            0,
        ),
        (
            conv(8, (3, 5), (2, 1), Padding::Valid, false),
            image(48, 64, 16),
            image(23, 60, 8),
            3 * 5 * 16 * 8,
            0,
        ),
        (
            pool(PoolKind::Max, (16, 16), (16, 16), Padding::Valid),
            image(223, 223, 100),
            image(13, 13, 100),
            0,
            0,
        ),
        (
            pool(PoolKind::Avg, (3, 3), (2, 2), Padding::Same),
            image(23, 60, 32),
            image(12, 30, 32),
            0,
            0,
        ),
        (
            Op::GlobalPool {
                kind: PoolKind::Avg,
            },
            image(8, 8, 128),
            Shape::Flat(128),
            0,
            0,
        ),
        (
            Op::GlobalPool {
                kind: PoolKind::Max,
            },
            image(8, 8, 128),
            Shape::Flat(128),
            0,
            0,
        ),
        (Op::Identity, image(8, 8, 128), image(8, 8, 128), 0, 0),
        (
            Op::Conv {
                filters: 64,
                kernel: (3, 3),
                stride: (2, 2),
                pad: Padding::Same,
                bias: true,
                groups: 4,
            },
            image(15, 15, 32),
            image(8, 8, 64),
            3 * 3 * 8 * 64 + 64,
            0,
        ),
        (
            Op::DepthwiseConv {
                multiplier: 2,
                kernel: (3, 3),
                stride: (2, 2),
                pad: Padding::Valid,
                bias: true,
            },
            image(15, 15, 32),
            image(7, 7, 64),
            3 * 3 * 32 * 2 + 64,
            0,
        ),
        (
            Op::SeparableConv {
                filters: 128,
                multiplier: 1,
                kernel: (3, 3),
                stride: (1, 1),
                pad: Padding::Same,
                bias: false,
            },
            image(15, 15, 32),
            image(15, 15, 128),
            3 * 3 * 32 + 32 * 128,
            0,
        ),
        (Op::Flatten, image(13, 13, 100), Shape::Flat(16900), 0, 0),
        (
            Op::Dense {
                units: 2,
                bias: true,
            },
            Shape::Flat(16900),
            Shape::Flat(2),
            33802,
            0,
        ),
        (
            Op::Dense {
                units: 2,
                bias: false,
            },
            Shape::Flat(20),
            Shape::Flat(2),
            40,
            0,
        ),
        (
            Op::Dropout { rate: 0.5 },
            Shape::Flat(128),
            Shape::Flat(128),
            0,
            0,
        ),
    ];
    for (op, input, output, trainable, non_trainable) in table {
        assert_eq!(output_shape(&op, input), Ok(output), "{op:?} on {input}");
        let counted = params(&op, input).expect("fits");
        assert_eq!(
            (counted.trainable, counted.non_trainable),
            (trainable, non_trainable),
            "{op:?}"
        );
    }
}

#[test]
fn shape_errors_table() {
    let pool2 = Op::Pool {
        kind: PoolKind::Max,
        size: (2, 2),
        stride: (2, 2),
        pad: Padding::Valid,
    };
    assert_eq!(
        output_shape(&pool2, image(1, 1, 20)),
        Err(ShapeError::Vanished {
            height: 0,
            width: 0
        })
    );
    assert_eq!(
        output_shape(&pool2, image(4, 1, 20)),
        Err(ShapeError::Vanished {
            height: 2,
            width: 0
        })
    );
    assert_eq!(
        output_shape(&pool2, Shape::Flat(20)),
        Err(ShapeError::NeedsImage)
    );
    assert_eq!(
        output_shape(
            &Op::GlobalPool {
                kind: PoolKind::Avg
            },
            Shape::Flat(20)
        ),
        Err(ShapeError::NeedsImage)
    );
    let huge = Op::Conv {
        filters: 1 << 24,
        kernel: (1, 1),
        stride: (1, 1),
        pad: Padding::Same,
        bias: true,
        groups: 1,
    };
    assert_eq!(
        output_shape(&huge, image(1024, 1024, 3)),
        Err(ShapeError::TooLarge)
    );
}

#[test]
fn merge_shape_table() {
    use strata::compile::shapes::merge_shape;
    use strata::ir::MergeKind::{Add, Concat, Mul};
    let a = image(8, 8, 16);
    assert_eq!(merge_shape(Add, &[a, a, a]), Ok(a));
    assert_eq!(
        merge_shape(Add, &[a, image(8, 8, 32)]),
        Err(ShapeError::Mismatch(Add))
    );
    assert_eq!(
        merge_shape(Concat, &[a, image(8, 8, 32)]),
        Ok(image(8, 8, 48))
    );
    assert_eq!(
        merge_shape(Concat, &[a, image(4, 8, 16)]),
        Err(ShapeError::Mismatch(Concat))
    );
    assert_eq!(
        merge_shape(Concat, &[Shape::Flat(3), Shape::Flat(4)]),
        Ok(Shape::Flat(7))
    );
    assert_eq!(
        merge_shape(Concat, &[a, Shape::Flat(16)]),
        Err(ShapeError::Mismatch(Concat))
    );
    assert_eq!(merge_shape(Mul, &[a, Shape::Flat(16)]), Ok(a));
    assert_eq!(merge_shape(Mul, &[Shape::Flat(16), a]), Ok(a));
    assert_eq!(merge_shape(Mul, &[a, a]), Ok(a));
    assert_eq!(
        merge_shape(Mul, &[a, Shape::Flat(8)]),
        Err(ShapeError::Mismatch(Mul))
    );
    assert_eq!(
        merge_shape(Mul, &[Shape::Flat(5), Shape::Flat(5)]),
        Ok(Shape::Flat(5))
    );
}

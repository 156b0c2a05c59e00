//! Checkpoints: safetensors round trip with the spec and classes in the metadata, atomic
//! writes, and clear messages when names or shapes do not fit the model.

use strata::backend::checkpoint::{
    self, expected_tensors, Checkpoint, CheckpointError, NamedTensor,
};

const SPEC: &str =
    "input: 8x8x3\nclasses: 2\nmodel: bn -> conv3(4) relu -> pool2 -> dense2 softmax\n";

fn model() -> strata::ir::Model {
    strata::compile(SPEC, "ckpt").model.expect("model")
}

fn checkpoint_of(model: &strata::ir::Model) -> Checkpoint {
    let tensors = expected_tensors(model)
        .into_iter()
        .enumerate()
        .map(|(idx, (name, shape))| {
            let len = shape.iter().product::<usize>();
            NamedTensor {
                name,
                shape,
                data: (0..len).map(|v| (v + idx) as f32 * 0.5).collect(),
            }
        })
        .collect();
    Checkpoint {
        tensors,
        spec: SPEC.to_string(),
        classes: vec!["cats".into(), "dogs".into()],
        extra: Default::default(),
    }
}

#[test]
fn tensor_names_and_layouts_follow_the_design() {
    let names: Vec<(String, Vec<usize>)> = expected_tensors(&model());
    assert_eq!(
        names,
        vec![
            ("layers.0.gamma".to_string(), vec![3]),
            ("layers.0.beta".to_string(), vec![3]),
            ("layers.0.moving_mean".to_string(), vec![3]),
            ("layers.0.moving_variance".to_string(), vec![3]),
            ("layers.1.weight".to_string(), vec![4, 3, 3, 3]),
            ("layers.1.bias".to_string(), vec![4]),
            ("layers.4.weight".to_string(), vec![2, 36]),
            ("layers.4.bias".to_string(), vec![2]),
        ]
    );
}

#[test]
fn round_trip_through_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("last.safetensors");
    let model = model();
    let written = checkpoint_of(&model);
    checkpoint::save(&path, &written).expect("save");
    let read = checkpoint::load(&path).expect("load");
    let mut expected = written.clone();
    expected.tensors.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        read, expected,
        "tensors come back sorted by layer index, then name"
    );
    checkpoint::check_against(&read, &model).expect("fits");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

#[test]
fn mismatches_are_listed() {
    let model = model();
    let mut bad = checkpoint_of(&model);
    bad.tensors.retain(|t| t.name != "layers.1.bias");
    bad.tensors[4].shape = vec![5, 3, 3, 3];
    bad.tensors.push(NamedTensor {
        name: "layers.9.weight".into(),
        shape: vec![1],
        data: vec![0.0],
    });
    let err = checkpoint::check_against(&bad, &model).expect_err("mismatch");
    let CheckpointError::Mismatch(lines) = &err else {
        panic!("{err}")
    };
    assert_eq!(lines.len(), 3, "{lines:?}");
    let text = err.to_string();
    assert!(text.contains("`layers.1.bias` [4] is missing"), "{text}");
    assert!(
        text.contains(
            "`layers.1.weight` is [5, 3, 3, 3] in the checkpoint but the model needs [4, 3, 3, 3]"
        ),
        "{text}"
    );
    assert!(
        text.contains("`layers.9.weight` [1] is not a parameter of the model"),
        "{text}"
    );
}

#[test]
fn files_that_are_not_checkpoints_are_refused() {
    // Seven bytes cannot even hold a header's length: cut short, or never a checkpoint.
    assert!(matches!(
        checkpoint::from_bytes(b"garbage"),
        Err(CheckpointError::Truncated(_))
    ));
    assert!(matches!(
        checkpoint::from_bytes(b"this is not a checkpoint"),
        Err(CheckpointError::Format(_))
    ));
    let plain = safetensors::serialize(
        Vec::<(String, safetensors::tensor::TensorView<'_>)>::new(),
        None,
    )
    .expect("bytes");
    assert!(matches!(
        checkpoint::from_bytes(&plain),
        Err(CheckpointError::Metadata(_))
    ));
}

//! The optimiser state and weights survive a checkpoint round trip exactly: a restored
//! network and optimiser take the same step as the originals.

use strata::backend::checkpoint::{Checkpoint, NamedTensor};
use strata::backend::network::Network;
use strata::backend::optimizer::{export_state, import_state, Optimizer};
use strata::backend::params::to_tensors;

fn batch(seed: usize) -> (Vec<f32>, Vec<usize>) {
    let images = (0..8 * 8 * 8)
        .map(|v| ((v * 31 + seed * 17) % 97) as f32 / 97.0)
        .collect();
    let labels = (0..8).map(|i| (i + seed) % 2).collect();
    (images, labels)
}

#[test]
fn restored_network_and_optimizer_take_the_same_step() {
    for optimizer in ["adam", "sgd\n  momentum: 0.9", "rmsprop"] {
        let spec = format!("input: 8x8x1\nmodel: bn -> conv3(4, pad=same) relu -> pool2 -> dense2 softmax\ntrain:\n  optimizer: {optimizer}\n  lr: 0.01\n");
        let model = strata::compile(&spec, "resume").model.expect("model");
        let mut network = Network::new(&model, 1);
        let mut opt = Optimizer::new(&model.train);
        for step in 0..5 {
            let (images, labels) = batch(step);
            network.train_step(images, &labels, &mut opt).expect("step");
        }
        let mut tensors = to_tensors(&model, &network.params);
        let moments = export_state(&mut opt, &model, &mut network.params).expect("export");
        tensors.extend(moments.iter().map(|t| NamedTensor {
            name: format!("optimizer.{}", t.name),
            ..t.clone()
        }));
        let checkpoint = Checkpoint {
            tensors,
            spec: spec.clone(),
            classes: vec!["a".into(), "b".into()],
            extra: Default::default(),
        };
        let mut restored = Network::from_checkpoint(&model, &checkpoint).expect("fits");
        let mut restored_opt = Optimizer::new(&model.train);
        import_state(
            &mut restored_opt,
            &model,
            &mut restored.params,
            &moments,
            opt.step,
        )
        .expect("import");
        let (images, labels) = batch(9);
        let a = network
            .train_step(images.clone(), &labels, &mut opt)
            .expect("step");
        let b = restored
            .train_step(images, &labels, &mut restored_opt)
            .expect("step");
        assert_eq!(a, b, "{optimizer}");
        assert_eq!(
            to_tensors(&model, &network.params),
            to_tensors(&model, &restored.params),
            "{optimizer}"
        );
    }
}

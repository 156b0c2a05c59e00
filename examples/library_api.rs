//! The library API end to end: compile a spec, load batches from its image folders, train a few
//! steps, save a checkpoint, load it back as a trained model and predict one image.
//!
//!     cargo run --release --example library_api -- [SPEC] [STEPS] [CHECKPOINT]
//!
//! SPEC defaults to `examples/fashion-mini.yaml` and STEPS to 30. The checkpoint is written to a
//! temporary folder and removed, or kept at CHECKPOINT when given (for `strata predict`).

use std::path::PathBuf;
use strata::backend::checkpoint::{self, Checkpoint};
use strata::backend::network::Network;
use strata::backend::optimizer::Optimizer;
use strata::backend::params;
use strata::data::{folder, paths, ImageSpec, Loader};
use strata::infer::{predict_files, Trained};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec_path = PathBuf::from(args.first().map_or("examples/fashion-mini.yaml", |s| s));
    let steps: usize = args.get(1).map_or(Ok(30), |s| s.parse())?;

    // 1. Compile: spec text → checked IR (or diagnostics saying what is wrong).
    let text = std::fs::read_to_string(&spec_path)?;
    let compiled = strata::compile(&text, "model");
    for diagnostic in &compiled.diagnostics {
        eprintln!("{}: {}", diagnostic.severity, diagnostic.message);
    }
    let model = compiled.model.ok_or("the spec does not compile")?;
    println!("{}: {} parameters", model.name, model.params.total());

    // 2. Data: the spec's training folder (relative to the spec file), scanned into classes.
    let train_dir = paths::resolve(&spec_path, &model.data, None)
        .train
        .ok_or("the spec has no `data.train`")?;
    let found = folder::scan(&train_dir).map_err(|d| d.message)?;
    let image_spec = ImageSpec::for_model(&model);
    let loader = Loader::new(found.samples(), image_spec, 64 << 20);

    // 3. Train: shuffled batches, one optimiser step each (the loader decodes ahead).
    let mut network = Network::new(&model, model.train.seed);
    let mut optimizer = Optimizer::new(&model.train);
    let batch_size = model.train.batch_size as usize;
    let order = loader.order(model.train.seed, 0, true);
    for (step, batch) in loader
        .batches(order, batch_size)
        .into_iter()
        .take(steps)
        .enumerate()
    {
        let stats = network.train_step(batch.images, &batch.labels, &mut optimizer)?;
        if step % 10 == 0 {
            println!(
                "step {step:>3}: loss {:.3}, {}/{} right",
                stats.loss, stats.correct, stats.count
            );
        }
    }

    // 4. Save a checkpoint: tensors, the spec text and the class names.
    let temporary = std::env::temp_dir().join(format!("strata-example-{}", std::process::id()));
    let ckpt_path = match args.get(2) {
        Some(path) => PathBuf::from(path),
        None => {
            std::fs::create_dir_all(&temporary)?;
            temporary.join("last.safetensors")
        }
    };
    let ckpt = Checkpoint {
        tensors: params::to_tensors(&model, &network.params),
        spec: text.clone(),
        classes: found.classes.clone(),
        extra: Default::default(),
    };
    checkpoint::save(&ckpt_path, &ckpt)?;

    // 5. Predict: the checkpoint alone is enough (its spec is compiled again).
    let mut trained = Trained::load(&ckpt_path)?;
    let image = found.files[0][0].clone();
    let result = predict_files(&mut trained, std::slice::from_ref(&image), 1);
    for prediction in &result.predictions {
        println!("{} (a `{}`):", prediction.path.display(), found.classes[0]);
        for (class, p) in prediction.top(trained.classes.len()) {
            println!("  {:<12} {:>5.1}%", trained.classes[class], p * 100.0);
        }
    }
    if args.get(2).is_none() {
        std::fs::remove_dir_all(&temporary)?;
    }
    Ok(())
}

//! strata's integration tests, as one test binary: each module was a file of its own under
//! `tests/`. One binary links the library once instead of fifty times, which is most of what
//! CI spent building the tests. Tests that install a counting global allocator
//! (`checkpoint_fuzz`, `hostile_input`, `hostile_outputs`) and the MPI tests stay separate
//! binaries, because their measurements or their launcher need a process of their own.
//!
//! Run one module with a filter: `cargo test --release --test suite -- graph_parity::`.

#[path = "../common/mod.rs"]
mod common;

mod architecture;
mod augment;
mod backend;
mod bn_dense;
mod checkpoint;
mod cli;
mod commands;
mod data;
mod data_parallel;
mod diagnostics;
mod docs_language;
mod editors;
mod export_onnx;
mod fused_activations;
mod gradcheck_activations_new;
mod gradcheck_conv;
mod gradcheck_conv_pool;
mod gradcheck_depthwise;
mod gradcheck_elementwise;
mod gradcheck_graph;
mod gradcheck_grouped;
mod gradcheck_merge;
mod gradcheck_network;
mod gradcheck_norm;
mod gradcheck_pool;
mod gradcheck_separable;
mod graph_commands;
mod graph_parity;
mod graph_properties;
mod graph_training_fuzz;
mod graphs;
mod hostile_data;
mod inference;
mod language;
mod loss_bce;
mod lsp;
mod lsp_features;
mod lsp_robustness;
mod plot;
mod recipes_math;
mod recipes_spec;
mod recipes_train;
mod resume_state;
mod robustness;
mod run_folders;
mod scalar_styles;
mod shapes;
mod suggestions;
mod summaries;
mod train;
mod winograd_conv;
mod zoo;

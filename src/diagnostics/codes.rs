//! The stable diagnostic codes (docs/diagnostics.md). Codes are never renamed; new ones are
//! added here.

/// The file is not valid YAML.
pub const YAML_SYNTAX: &str = "strata::yaml::syntax";
/// A key the spec format does not have.
pub const SPEC_UNKNOWN_KEY: &str = "strata::spec::unknown_key";
/// The spec file is larger than the 1 MiB limit.
pub const SPEC_TOO_LARGE: &str = "strata::spec::too_large";
/// `input` or `model` is missing.
pub const SPEC_MISSING_KEY: &str = "strata::spec::missing_key";
/// A value of the wrong type or out of range.
pub const SPEC_INVALID_VALUE: &str = "strata::spec::invalid_value";
/// The layer-stack text does not parse.
pub const SYNTAX_PARSE: &str = "strata::syntax::parse";
/// An unknown layer or activation name.
pub const LAYER_UNKNOWN: &str = "strata::layer::unknown";
/// A missing, unknown, duplicate, mistyped or out-of-range argument.
pub const LAYER_ARGUMENT: &str = "strata::layer::argument";
/// A repeat of 0, or a model that expands past the layer limit.
pub const REPEAT_COUNT: &str = "strata::repeat::count";
/// A spatial size reaches 0, or a kernel or pool is larger than its input.
pub const SHAPE_VANISHED: &str = "strata::shape::vanished";
/// A conv, pool or gap after the input was flattened.
pub const SHAPE_RANK: &str = "strata::shape::rank";
/// The branches of a merge end in shapes it cannot combine.
pub const SHAPE_MISMATCH: &str = "strata::shape::mismatch";
/// A block that calls itself, directly or through others.
pub const BLOCK_RECURSION: &str = "strata::block::recursion";
/// Blocks that call blocks more than 32 deep.
pub const BLOCK_DEPTH: &str = "strata::block::depth";
/// A block call with a missing, unknown or duplicate parameter.
pub const BLOCK_ARGUMENT: &str = "strata::block::argument";
/// A block declared twice, or named like a layer, activation, merge or value.
pub const BLOCK_NAME: &str = "strata::block::name";
/// A block key that is not a signature, or whose parameters clash.
pub const BLOCK_SIGNATURE: &str = "strata::block::signature";
/// The last layer does not fit the loss or the class count.
pub const MODEL_HEAD: &str = "strata::model::head";
/// Warning: softmax somewhere other than the last layer.
pub const LINT_SOFTMAX_NOT_LAST: &str = "strata::lint::softmax_not_last";
/// Warning: two activations in a row.
pub const LINT_DOUBLE_ACTIVATION: &str = "strata::lint::double_activation";
/// Warning: an activation after softmax.
pub const LINT_ACTIVATION_AFTER_SOFTMAX: &str = "strata::lint::activation_after_softmax";
/// Warning: a dense layer on a huge flattened input.
pub const LINT_HUGE_DENSE_INPUT: &str = "strata::lint::huge_dense_input";
/// Warning: a block no call expands.
pub const LINT_UNUSED_BLOCK: &str = "strata::lint::unused_block";
/// Warning: a block parameter its body never uses.
pub const LINT_UNUSED_PARAMETER: &str = "strata::lint::unused_parameter";
/// Warning: a `#` comment in a folded or plain scalar that hides the lines after it.
pub const LINT_FOLDED_COMMENT: &str = "strata::lint::folded_comment";
/// Warning: a large kernel given by position, probably a filter count in PyTorch's order.
pub const LINT_LARGE_POSITIONAL_KERNEL: &str = "strata::lint::large_positional_kernel";

/// The image folder does not exist or cannot be listed.
pub const DATA_MISSING_FOLDER: &str = "strata::data::missing_folder";
/// The image folder has no class subfolders.
pub const DATA_NO_CLASSES: &str = "strata::data::no_classes";
/// A class folder has no files, or none that is a readable image.
pub const DATA_EMPTY_CLASS: &str = "strata::data::empty_class";
/// Training and validation folders have different classes.
pub const DATA_CLASS_MISMATCH: &str = "strata::data::class_mismatch";
/// The data's class count differs from the model's output units.
pub const DATA_CLASS_COUNT: &str = "strata::data::class_count";
/// Warning: files that are not readable images were skipped.
pub const DATA_UNREADABLE_IMAGE: &str = "strata::data::unreadable_image";
/// `train.class_weight` names a class the training data does not have.
pub const DATA_UNKNOWN_CLASS: &str = "strata::data::unknown_class";
/// A class folder's name is not valid UTF-8.
pub const DATA_CLASS_NAME: &str = "strata::data::class_name";

/// `train --out` names a folder that holds files, and not this run's.
pub const RUN_FOLDER_NOT_EMPTY: &str = "strata::run::folder_not_empty";
/// Another process holds the run folder's lock.
pub const RUN_FOLDER_IN_USE: &str = "strata::run::folder_in_use";
/// The command line asks for a run that cannot be: a spec path or a setting flag with
/// `--resume` (which continues with the run's own settings), or neither a spec nor `--resume`.
pub const RUN_USAGE: &str = "strata::run::usage";
/// `--resume` finds no readable `last.safetensors` with a run state.
pub const RUN_NO_CHECKPOINT: &str = "strata::run::no_checkpoint";
/// `--resume`: the spec file changed since the run started.
pub const RUN_SPEC_CHANGED: &str = "strata::run::spec_changed";
/// `--resume`: no intact copy of the run's history is left.
pub const RUN_HISTORY: &str = "strata::run::history";
/// `--resume`: the checkpoint's optimiser state does not fit the model and optimiser.
pub const RUN_OPTIMIZER_STATE: &str = "strata::run::optimizer_state";
/// `train`: the spec names no training images and no `--data` is given.
pub const RUN_NO_TRAINING_DATA: &str = "strata::run::no_training_data";
/// `--resume`: the training folder's classes changed since the run started.
pub const RUN_CLASSES_CHANGED: &str = "strata::run::classes_changed";
/// A training step or inference pass on the batch cannot fit in the machine's memory (an
/// error), or may not (a warning).
pub const RUN_OUT_OF_MEMORY: &str = "strata::run::out_of_memory";

/// The codes about run folders and resuming, reported by `strata train`.
pub const RUN: &[&str] = &[
    RUN_FOLDER_NOT_EMPTY,
    RUN_FOLDER_IN_USE,
    RUN_USAGE,
    RUN_NO_CHECKPOINT,
    RUN_SPEC_CHANGED,
    RUN_HISTORY,
    RUN_OPTIMIZER_STATE,
    RUN_NO_TRAINING_DATA,
    RUN_CLASSES_CHANGED,
    RUN_OUT_OF_MEMORY,
];

/// The codes about image folders, reported by the data stage (tested on generated folders).
pub const DATA: &[&str] = &[
    DATA_MISSING_FOLDER,
    DATA_NO_CLASSES,
    DATA_EMPTY_CLASS,
    DATA_CLASS_MISMATCH,
    DATA_CLASS_COUNT,
    DATA_UNREADABLE_IMAGE,
    DATA_UNKNOWN_CLASS,
    DATA_CLASS_NAME,
];

/// A checkpoint's model parameters hold NaN or infinite values.
pub const MODEL_NON_FINITE_WEIGHTS: &str = "strata::model::non_finite_weights";

/// The codes about trained checkpoints, reported by `predict` and `evaluate` when they load one
/// (tested on generated checkpoints).
pub const CHECKPOINT: &[&str] = &[MODEL_NON_FINITE_WEIGHTS];

/// The codes whose failing spec is too large to show in the documentation, which shows the
/// rendered report as a `text` example instead (their fixtures are in the tests).
pub const TOO_LARGE_TO_SHOW: &[&str] = &[SPEC_TOO_LARGE];

/// Every code the compiler front end can report, in table order. A test requires a fixture
/// spec for each.
pub const ALL: &[&str] = &[
    YAML_SYNTAX,
    SPEC_UNKNOWN_KEY,
    SPEC_MISSING_KEY,
    SPEC_INVALID_VALUE,
    SPEC_TOO_LARGE,
    SYNTAX_PARSE,
    LAYER_UNKNOWN,
    LAYER_ARGUMENT,
    REPEAT_COUNT,
    SHAPE_VANISHED,
    SHAPE_RANK,
    SHAPE_MISMATCH,
    BLOCK_RECURSION,
    BLOCK_DEPTH,
    BLOCK_ARGUMENT,
    BLOCK_NAME,
    BLOCK_SIGNATURE,
    MODEL_HEAD,
    LINT_SOFTMAX_NOT_LAST,
    LINT_DOUBLE_ACTIVATION,
    LINT_ACTIVATION_AFTER_SOFTMAX,
    LINT_HUGE_DENSE_INPUT,
    LINT_UNUSED_BLOCK,
    LINT_UNUSED_PARAMETER,
    LINT_FOLDED_COMMENT,
    LINT_LARGE_POSITIONAL_KERNEL,
];

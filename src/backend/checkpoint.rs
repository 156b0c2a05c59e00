//! Checkpoints in safetensors: tensors named `layers.<i>.<param>` in the checkpoint layouts of
//! [`crate::ir::layout`] (conv `weight` [filters, c_in/groups, k_h, k_w], dense `weight`
//! [units, in] with the input in channel, row, column order, bn `gamma` `beta` `moving_mean`
//! `moving_variance`, …; docs/checkpoints.md), and metadata `strata.spec` (the spec file's text) and `strata.classes`
//! (a JSON array of class names). Files are written atomically: a temporary file in the same
//! folder, synced, then renamed over the target, so a crash never leaves a half-written one.

use crate::files::{open_regular, OpenError};
use crate::ir::Model;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Metadata key of the spec text.
pub const SPEC_KEY: &str = "strata.spec";
/// Metadata key of the class names (a JSON array).
pub const CLASSES_KEY: &str = "strata.classes";
/// Prefix of tensors that are training state (optimiser moments), not model parameters.
pub const STATE_PREFIX: &str = "optimizer.";

/// One named f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// `layers.<i>.<param>`.
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values in row-major order.
    pub data: Vec<f32>,
}

/// A checkpoint's contents.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The tensors, in layer order.
    pub tensors: Vec<NamedTensor>,
    /// The spec file's text.
    pub spec: String,
    /// Class names in output order.
    pub classes: Vec<String>,
    /// Other metadata (`strata.*` keys the trainer adds).
    pub extra: BTreeMap<String, String>,
}

/// Why a checkpoint cannot be read or used.
#[derive(Debug)]
pub enum CheckpointError {
    /// Reading or writing failed.
    Io(PathBuf, std::io::Error),
    /// The path is not a regular file but a FIFO, a device, a socket or a folder (named).
    NotAFile(PathBuf, &'static str),
    /// The file ends before the data its header describes, or its header length is cut off:
    /// what is missing.
    Truncated(String),
    /// The file is not a safetensors file strata can read.
    Format(String),
    /// The file lacks `strata.spec` or `strata.classes`.
    Metadata(String),
    /// Tensor names or shapes differ from what the compiled spec needs.
    Mismatch(Vec<String>),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Io(path, err) => write!(f, "`{}`: {err}", path.display()),
            CheckpointError::NotAFile(path, kind) => write!(
                f,
                "`{}` is not a checkpoint file but {kind}",
                path.display()
            ),
            CheckpointError::Truncated(err) => write!(f, "truncated or corrupt: {err}"),
            CheckpointError::Format(err) => {
                write!(f, "not a readable safetensors checkpoint: {err}")
            }
            CheckpointError::Metadata(err) => write!(f, "checkpoint metadata: {err}"),
            CheckpointError::Mismatch(lines) => {
                write!(f, "the checkpoint does not fit the model:")?;
                for line in lines {
                    write!(f, "\n  - {line}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for CheckpointError {}

/// The tensors a model's checkpoint holds, with their shapes, in layer order: each layer's
/// layout, named `layers.<i>.<param>`.
pub fn expected_tensors(model: &Model) -> Vec<(String, Vec<usize>)> {
    model
        .layers
        .iter()
        .flat_map(|layer| {
            layer
                .layout()
                .into_iter()
                .map(move |spec| (format!("layers.{}.{}", layer.index, spec.name), spec.shape))
        })
        .collect()
}

/// Checks the checkpoint's tensor names and shapes against `model`; lists every difference.
pub fn check_against(checkpoint: &Checkpoint, model: &Model) -> Result<(), CheckpointError> {
    let found: HashMap<&str, &NamedTensor> = checkpoint
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let expected = expected_tensors(model);
    let mut problems = Vec::new();
    for (name, shape) in &expected {
        match found.get(name.as_str()) {
            None => problems.push(format!("`{name}` {shape:?} is missing")),
            Some(tensor) if &tensor.shape != shape => problems.push(format!(
                "`{name}` is {:?} in the checkpoint but the model needs {shape:?}",
                tensor.shape
            )),
            Some(_) => {}
        }
    }
    for tensor in checkpoint
        .tensors
        .iter()
        .filter(|t| !t.name.starts_with(STATE_PREFIX))
    {
        if !expected.iter().any(|(name, _)| name == &tensor.name) {
            problems.push(format!(
                "`{}` {:?} is not a parameter of the model",
                tensor.name, tensor.shape
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CheckpointError::Mismatch(problems))
    }
}

/// Serialises a checkpoint to safetensors bytes.
pub fn to_bytes(checkpoint: &Checkpoint) -> Result<Vec<u8>, CheckpointError> {
    let mut metadata: HashMap<String, String> = checkpoint.extra.clone().into_iter().collect();
    metadata.insert(SPEC_KEY.to_string(), checkpoint.spec.clone());
    let classes = serde_json::to_string(&checkpoint.classes)
        .map_err(|err| CheckpointError::Format(err.to_string()))?;
    metadata.insert(CLASSES_KEY.to_string(), classes);
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = checkpoint
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, data, shape)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|err| CheckpointError::Format(err.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata))
        .map_err(|err| CheckpointError::Format(err.to_string()))
}

/// Reads a checkpoint from safetensors bytes.
pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let (_, header) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|err| format_error(bytes, err))?;
    let file =
        safetensors::SafeTensors::deserialize(bytes).map_err(|err| format_error(bytes, err))?;
    let mut metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let spec = metadata.remove(SPEC_KEY).ok_or_else(|| {
        CheckpointError::Metadata(format!("no `{SPEC_KEY}`: not written by strata"))
    })?;
    let classes_json = metadata.remove(CLASSES_KEY).ok_or_else(|| {
        CheckpointError::Metadata(format!("no `{CLASSES_KEY}`: not written by strata"))
    })?;
    let classes: Vec<String> = serde_json::from_str(&classes_json).map_err(|err| {
        CheckpointError::Metadata(format!("`{CLASSES_KEY}` is not a list of names: {err}"))
    })?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(CheckpointError::Format(format!(
                "`{name}` is {:?}, not F32",
                view.dtype()
            )));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    tensors.sort_by_key(|t| tensor_order(&t.name));
    Ok(Checkpoint {
        tensors,
        spec,
        classes,
        extra: metadata,
    })
}

/// The error of a file safetensors refused: [`CheckpointError::Truncated`] with what is missing
/// when the file ends early, [`CheckpointError::Format`] otherwise.
fn format_error(bytes: &[u8], err: safetensors::SafeTensorError) -> CheckpointError {
    use safetensors::SafeTensorError as E;
    const N_LEN: usize = 8;
    let header_len = bytes
        .get(..N_LEN)
        .and_then(|len| <[u8; N_LEN]>::try_from(len).ok())
        .map(u64::from_le_bytes);
    let after_length = bytes.len().saturating_sub(N_LEN) as u64;
    match (err, header_len) {
        (E::HeaderTooSmall, _) => CheckpointError::Truncated(format!(
            "{} byte(s), fewer than the {N_LEN} that give a safetensors header's length",
            bytes.len()
        )),
        (E::InvalidHeaderLength, Some(len)) if len > after_length => CheckpointError::Truncated(
            format!("its header should take {len} bytes but only {after_length} follow its length"),
        ),
        (E::MetadataIncompleteBuffer, Some(len)) => {
            let data = after_length.saturating_sub(len);
            match data_len(bytes, len) {
                Some(needed) if needed > data => CheckpointError::Truncated(format!(
                    "its tensors take {needed} bytes but only {data} follow its header"
                )),
                Some(needed) => CheckpointError::Format(format!(
                    "its tensors take {needed} bytes but {data} follow its header"
                )),
                None => CheckpointError::Format(E::MetadataIncompleteBuffer.to_string()),
            }
        }
        (err, _) => CheckpointError::Format(err.to_string()),
    }
}

/// The bytes of tensor data a header of `header_len` bytes describes: the largest end offset.
fn data_len(bytes: &[u8], header_len: u64) -> Option<u64> {
    let end = usize::try_from(header_len).ok()?.checked_add(8)?;
    let header = bytes.get(8..end)?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    header
        .iter()
        .filter(|(name, _)| name.as_str() != "__metadata__")
        .filter_map(|(_, info)| info.get("data_offsets")?.get(1)?.as_u64())
        .max()
}

/// A model parameter tensor with NaN or infinite values.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    /// `layers.<i>.<param>`.
    pub name: String,
    /// How many of its values are not finite.
    pub count: usize,
    /// How many values it has.
    pub len: usize,
    /// The index of the first, in row-major order.
    pub first_index: usize,
    /// The first (NaN, inf or -inf).
    pub first_value: f32,
}

/// The model parameter tensors of `checkpoint` (not the optimiser's moments) that hold NaN or
/// infinite values, in layer order. A network built from them would print `NaN%` for every
/// image.
pub fn non_finite_tensors(checkpoint: &Checkpoint) -> Vec<NonFinite> {
    checkpoint
        .tensors
        .iter()
        .filter(|tensor| !tensor.name.starts_with(STATE_PREFIX))
        .filter_map(|tensor| {
            let (first_index, first_value) = tensor
                .data
                .iter()
                .copied()
                .enumerate()
                .find(|(_, value)| !value.is_finite())?;
            Some(NonFinite {
                name: tensor.name.clone(),
                count: tensor
                    .data
                    .iter()
                    .filter(|value| !value.is_finite())
                    .count(),
                len: tensor.data.len(),
                first_index,
                first_value,
            })
        })
        .collect()
}

/// Sort key: layer index, then the name.
fn tensor_order(name: &str) -> (usize, String) {
    let index = name
        .split('.')
        .nth(1)
        .and_then(|idx| idx.parse().ok())
        .unwrap_or(usize::MAX);
    (index, name.to_string())
}

/// Writes `checkpoint` to `path` atomically.
pub fn save(path: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    let bytes = to_bytes(checkpoint)?;
    write_atomic(path, &bytes).map_err(|err| CheckpointError::Io(path.to_path_buf(), err))
}

/// Reads the checkpoint at `path`: a regular file (after following symlinks), read once to
/// its size; a FIFO or a device is refused unread, so it neither blocks nor reads forever.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    from_bytes(&read_regular_file(path)?)
}

/// The bytes of the regular file at `path`, its memory reserved up front (an error, not an
/// abort, when the file is larger than memory).
fn read_regular_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    use std::io::Read;
    let io = |err| CheckpointError::Io(path.to_path_buf(), err);
    let (file, meta) = open_regular(path).map_err(|err| match err {
        OpenError::Io(err) => io(err),
        OpenError::NotAFile(kind) => CheckpointError::NotAFile(path.to_path_buf(), kind),
    })?;
    let len = meta.len();
    let mut bytes = Vec::new();
    usize::try_from(len)
        .ok()
        .and_then(|len| bytes.try_reserve_exact(len).ok())
        .ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("cannot hold its {len} bytes in memory"),
            ))
        })?;
    file.take(len).read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |name| name.to_string_lossy().into_owned());
    let temporary = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

//! Property test of the checkpoint reader (`backend::checkpoint::from_bytes`) on hostile
//! bytes: a real checkpoint cut short, with bits flipped, with a lying header length, with its
//! header replaced by one declaring huge shapes and offsets or other dtypes, with bytes spliced
//! in, and plain random bytes. Each of a fixed number of cases, from a fixed seed, must answer
//! without a panic, within a time bound, holding at most a small multiple of the input's size
//! in memory (counted by a wrapping allocator); a file cut short or with a changed header
//! length must be refused. A file the reader accepts is also turned into a network for
//! inference, which must not panic either.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::peak_allocation;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use strata::backend::checkpoint::{self, expected_tensors, Checkpoint, NamedTensor};
use strata::infer::Trained;

/// Cases per run: enough to reach every mutation many times, fast enough for CI.
const CASES: u32 = 512;

/// The bound on reading one input (a few kilobytes); a hang or a quadratic path runs into it.
const READ_BOUND: Duration = Duration::from_secs(1);

const SPEC: &str =
    "input: 8x8x1\nclasses: 2\nmodel: bn -> conv3(2) relu -> pool2 -> dense2 softmax\n";

/// The bytes of a real checkpoint of [`SPEC`].
fn valid() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let model = strata::compile(SPEC, "fuzz").model.expect("spec compiles");
        let tensors = expected_tensors(&model)
            .into_iter()
            .map(|(name, shape)| {
                let len = shape.iter().product::<usize>();
                let data = (0..len).map(|idx| 0.1 + idx as f32 * 0.01).collect();
                NamedTensor { name, shape, data }
            })
            .collect();
        let checkpoint = Checkpoint {
            tensors,
            spec: SPEC.to_string(),
            classes: vec!["cat".into(), "dog".into()],
            extra: Default::default(),
        };
        checkpoint::to_bytes(&checkpoint).expect("bytes")
    })
}

/// The length of the valid checkpoint's header.
fn valid_header_len() -> u64 {
    u64::from_le_bytes(valid()[..8].try_into().expect("8 bytes"))
}

/// One hostile input, as a change to the valid checkpoint (or none of it).
#[derive(Clone, Debug)]
enum Mutation {
    /// Keep the first `n` bytes (fewer than all).
    Truncate(usize),
    /// XOR the byte at each position (modulo the length) with a non-zero mask.
    Flip(Vec<(usize, u8)>),
    /// Write another header length.
    HeaderLength(u64),
    /// Replace the header with this JSON; its length written truthfully or not; then `data`.
    Header {
        json: String,
        lie: Option<u64>,
        data: Vec<u8>,
    },
    /// Insert bytes at a position (modulo the length).
    Splice(usize, Vec<u8>),
    /// Bytes with no relation to a checkpoint.
    Random(Vec<u8>),
}

/// A dimension or offset: small, at a power-of-two edge, or anything.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..16,
        (0u32..64).prop_map(|shift| 1u64 << shift),
        Just(u64::MAX),
        Just(u64::MAX / 4 + 1),
        any::<u64>(),
    ]
}

/// One tensor entry of a safetensors header.
fn tensor_entry() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("F32"),
            Just("F64"),
            Just("F16"),
            Just("I8"),
            Just("BOOL"),
            Just("U64"),
            Just("F4"),
            Just("nope")
        ],
        prop::collection::vec(number(), 0..6),
        number(),
        number(),
    )
        .prop_map(|(dtype, shape, start, end)| {
            format!(r#"{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{start},{end}]}}"#)
        })
}

/// A whole header: tensors under `layers.*` names, and strata's metadata or something else.
fn header_json() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(tensor_entry(), 0..4),
        prop_oneof![
            Just(format!(
                r#"{{"strata.spec":{},"strata.classes":"[\"cat\",\"dog\"]"}}"#,
                serde_json::to_string(SPEC).expect("json string")
            )),
            Just(r#"{"strata.spec":"input: 8x8x1","strata.classes":"not json"}"#.to_string()),
            Just(r#"{"strata.spec":7}"#.to_string()),
            Just("null".to_string()),
        ],
    )
        .prop_map(|(tensors, metadata)| {
            let mut fields = vec![format!(r#""__metadata__":{metadata}"#)];
            for (idx, tensor) in tensors.iter().enumerate() {
                fields.push(format!(r#""layers.{idx}.weight":{tensor}"#));
            }
            format!("{{{}}}", fields.join(","))
        })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let len = valid().len();
    prop_oneof![
        (0..len).prop_map(Mutation::Truncate),
        prop::collection::vec((any::<usize>(), 1u8..=255), 1..8).prop_map(Mutation::Flip),
        number()
            .prop_filter("a different length", |n| *n != valid_header_len())
            .prop_map(Mutation::HeaderLength),
        (
            header_json(),
            prop::option::of(number()),
            prop::collection::vec(any::<u8>(), 0..256)
        )
            .prop_map(|(json, lie, data)| Mutation::Header { json, lie, data }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Splice(at, bytes)),
        prop::collection::vec(any::<u8>(), 0..512).prop_map(Mutation::Random),
    ]
}

/// The bytes a mutation makes.
fn apply(mutation: &Mutation) -> Vec<u8> {
    let valid = valid();
    match mutation {
        Mutation::Truncate(n) => valid[..*n].to_vec(),
        Mutation::Flip(flips) => {
            let mut bytes = valid.to_vec();
            for (at, mask) in flips {
                bytes[at % valid.len()] ^= mask;
            }
            bytes
        }
        Mutation::HeaderLength(n) => {
            let mut bytes = valid.to_vec();
            bytes[..8].copy_from_slice(&n.to_le_bytes());
            bytes
        }
        Mutation::Header { json, lie, data } => {
            let len = lie.unwrap_or(json.len() as u64);
            let mut bytes = len.to_le_bytes().to_vec();
            bytes.extend(json.as_bytes());
            bytes.extend(data);
            bytes
        }
        Mutation::Splice(at, inserted) => {
            let mut bytes = valid.to_vec();
            let at = at % (valid.len() + 1);
            bytes.splice(at..at, inserted.iter().copied());
            bytes
        }
        Mutation::Random(bytes) => bytes.clone(),
    }
}

/// What the cases found, for the summary line.
#[derive(Debug, Default)]
struct Tally {
    cases: u32,
    accepted: u32,
    refused: u32,
    usable: u32,
    largest_peak_ratio: f64,
}

#[test]
fn the_checkpoint_reader_refuses_hostile_bytes_without_panicking_or_hoarding_memory() {
    let tally = RefCell::new(Tally::default());
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        rng_seed: RngSeed::Fixed(0x5afe_7e45),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&mutation(), |mutation| {
        let bytes = apply(&mutation);
        let start = Instant::now();
        let (read, peak) = peak_allocation(|| checkpoint::from_bytes(&bytes));
        let elapsed = start.elapsed();
        prop_assert!(elapsed < READ_BOUND, "{elapsed:?} on {} bytes", bytes.len());
        let allowed = 16 * bytes.len() + (256 << 10);
        prop_assert!(
            peak <= allowed,
            "held {peak} bytes reading {} bytes",
            bytes.len()
        );
        let must_fail = matches!(mutation, Mutation::Truncate(_) | Mutation::HeaderLength(_));
        let mut tally = tally.borrow_mut();
        tally.cases += 1;
        tally.largest_peak_ratio = tally
            .largest_peak_ratio
            .max(peak as f64 / bytes.len().max(1) as f64);
        match read {
            Err(err) => {
                tally.refused += 1;
                prop_assert!(!err.to_string().is_empty());
            }
            Ok(found) => {
                prop_assert!(!must_fail, "accepted {mutation:?}");
                tally.accepted += 1;
                let values: usize = found.tensors.iter().map(|t| t.data.len()).sum();
                prop_assert!(
                    values * 4 <= bytes.len(),
                    "{values} values from {} bytes",
                    bytes.len()
                );
                for tensor in &found.tensors {
                    let product = tensor
                        .shape
                        .iter()
                        .try_fold(1usize, |acc, dim| acc.checked_mul(*dim));
                    prop_assert_eq!(product, Some(tensor.data.len()), "{}", tensor.name);
                }
                let trained = std::panic::catch_unwind(|| {
                    Trained::from_checkpoint("fuzz.safetensors".into(), &found).is_ok()
                })
                .map_err(|_| TestCaseError::fail(format!("panicked building {mutation:?}")))?;
                tally.usable += u32::from(trained);
            }
        }
        Ok(())
    });
    let tally = tally.into_inner();
    eprintln!("checkpoint fuzz: {tally:?}");
    if let Err(err) = result {
        panic!("{err}");
    }
    assert_eq!(tally.cases, CASES, "every case ran");
    assert!(tally.refused > CASES / 2, "{tally:?}");
    assert!(
        tally.accepted > 0,
        "some flips land in the weights: {tally:?}"
    );
}

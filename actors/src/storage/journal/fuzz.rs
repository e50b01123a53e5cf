//! Fuzzing of the journal's readers with proptest, as part of the test suite: damage of every
//! kind to journals the real writer wrote (flipped bytes, cuts, zeroed ranges, garbage after the
//! end), and arbitrary bytes as frames. Recovery never panics, never reads a record that was
//! not written, and either keeps a prefix of the records (cutting a torn tail) or refuses with
//! the file and an offset inside it. The follower (`Tail`) never panics either.

use proptest::prelude::*;

use super::format::parse_frame;
use super::tests::write_in;
use super::*;
use crate::config::Durability;

/// One kind of damage to the bytes of a segment.
#[derive(Clone, Debug)]
enum Damage {
    Flip { at: usize, mask: u8 },
    Cut { at: usize },
    Zero { at: usize, len: usize },
    Append { bytes: Vec<u8> },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Damage::Flip { at, mask }),
        any::<usize>().prop_map(|at| Damage::Cut { at }),
        (any::<usize>(), 1..64usize).prop_map(|(at, len)| Damage::Zero { at, len }),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Damage::Append { bytes }),
    ]
}

fn apply(data: &mut Vec<u8>, d: &Damage) {
    if data.is_empty() {
        return;
    }
    match d {
        Damage::Flip { at, mask } => {
            let i = at % data.len();
            data[i] ^= mask;
        }
        Damage::Cut { at } => data.truncate(at % data.len()),
        Damage::Zero { at, len } => {
            let i = at % data.len();
            let end = (i + len).min(data.len());
            data[i..end].fill(0);
        }
        Damage::Append { bytes } => data.extend_from_slice(bytes),
    }
}

/// The lead id each record of `write_in` carries.
fn lead_of(rec: &Record) -> String {
    rec.lead_id().unwrap_or_default().to_string()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn recovery_after_any_damage_keeps_a_prefix_or_names_the_place(
        records in 1u64..40,
        segment_bytes in prop_oneof![Just(512u64), Just(4096u64), Just(1u64 << 20)],
        which in any::<usize>(),
        damages in proptest::collection::vec(damage(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_in(dir.path(), records, segment_bytes, Durability::None);
        let segs = segments(dir.path()).unwrap();
        let seg = &segs[which % segs.len()];
        let mut data = std::fs::read(seg).unwrap();
        for d in &damages {
            apply(&mut data, d);
        }
        std::fs::write(seg, &data).unwrap();

        // The follower reads the damaged files without panicking, whatever it finds.
        let mut tail = Tail::new(dir.path(), 0);
        let _ = tail.read(records, usize::MAX, |_, _| {});

        let mut read = Vec::new();
        match recover(dir.path(), 0, |seq, rec| read.push((seq, lead_of(&rec)))) {
            Ok(report) => {
                // A prefix of what was written, in order, each record the one written there.
                for (i, (seq, lead)) in read.iter().enumerate() {
                    prop_assert_eq!(*seq, i as u64 + 1);
                    prop_assert_eq!(lead, &format!("lead-{i}"));
                }
                prop_assert!(read.len() as u64 <= records);
                // Once recovered, the journal reads back clean.
                let mut again = 0;
                let r2 = read_all(dir.path(), |_, _| again += 1).unwrap();
                prop_assert_eq!(r2.torn_tail, None);
                prop_assert_eq!(again, read.len());
                prop_assert_eq!(report.last_seq, read.len() as u64);
            }
            Err(ActorError::Corrupt { file, offset, .. }) => {
                let len = std::fs::metadata(&file).unwrap().len();
                prop_assert!(offset <= len, "offset {} past the end of {} ({} bytes)", offset, file.display(), len);
            }
            Err(other) => prop_assert!(false, "recovery failed with {other:?}"),
        }
    }

    #[test]
    fn arbitrary_bytes_as_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256), header in any::<[u8; 8]>()) {
        let _ = parse_frame(&data, 0);
        let mut framed = header.to_vec();
        framed.extend_from_slice(&data);
        if let Ok((_, json, next)) = parse_frame(&framed, 0) {
            prop_assert!(next <= framed.len());
            let _ = serde_json::from_slice::<Record>(json);
        }
    }
}

//! The prefix cache's policy on a fake sequence whose "KV" is its tokens.

use super::*;

/// A sequence whose "KV" is the tokens it read: enough to check what
/// the policy hands an engine.
#[derive(Default)]
struct Tokens(Vec<u32>);

impl SequenceKv for Tokens {
    type State = Vec<u32>;
    fn state(&self) -> Result<(Vec<u32>, u64), String> {
        Ok((self.0.clone(), self.0.len() as u64 * 4))
    }
    fn set_state(&mut self, state: &Vec<u32>) -> Result<(), String> {
        self.0.clone_from(state);
        Ok(())
    }
    fn save(&self, path: &Path, tokens: &[u32]) -> Result<u64, String> {
        assert_eq!(self.0, tokens, "a state holds exactly the tokens it is saved with");
        let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        std::fs::write(path, &bytes).map_err(|e| e.to_string())?;
        Ok(bytes.len() as u64)
    }
    fn load(&mut self, path: &Path, capacity: usize) -> Result<Vec<u32>, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let tokens: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if tokens.len() > capacity {
            return Err(format!("{} tokens do not fit {capacity}", tokens.len()));
        }
        self.0.clone_from(&tokens);
        Ok(tokens)
    }
    fn cut(&mut self, from: usize) -> bool {
        self.0.truncate(from);
        true
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

fn cache(dir: &Path, host_bytes: u64) -> PrefixCache<Vec<u32>> {
    PrefixCache::new(
        "model-f16".into(),
        host_bytes,
        Some(DiskTier::new(dir.to_path_buf(), 1 << 30)),
        None,
    )
}

/// What an engine does for one prompt prefix: restore, prefill the
/// rest (here: take the tokens), keep. Returns the sequence and use.
fn run(cache: &mut PrefixCache<Vec<u32>>, prefix: &[u32]) -> (Tokens, KvUse) {
    let plan = cache.plan(prefix, 1, true);
    let mut seq = Tokens::default();
    let mut kv = KvUse::default();
    let done = cache.restore(&plan, &mut seq, prefix, 1 << 20, &mut kv);
    assert_eq!(seq.0, prefix[..done], "the sequence holds exactly what was restored");
    seq.0.extend_from_slice(&prefix[done..]);
    kv.prefilled_tokens = (prefix.len() - done) as u32;
    if done < prefix.len() {
        cache.keep(&plan, &seq, prefix, &mut kv);
    }
    (seq, kv)
}

fn tokens(range: std::ops::Range<u32>) -> Vec<u32> {
    range.collect()
}

#[test]
fn a_prefix_comes_back_from_memory_then_from_disk_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = tokens(0..1500);
    let mut first = cache(dir.path(), 1 << 20);
    let (_, kv) = run(&mut first, &prefix);
    assert_eq!(kv.prefilled_tokens, 1500);
    assert!(kv.saved_bytes > 0 && kv.offloaded_bytes > 0, "{kv:?}");
    let (_, kv) = run(&mut first, &prefix);
    assert_eq!((kv.reused_tokens, kv.prefilled_tokens), (1500, 0), "{kv:?}");
    let mut second = cache(dir.path(), 1 << 20);
    let (_, kv) = run(&mut second, &prefix);
    assert_eq!((kv.restored_tokens, kv.prefilled_tokens), (1500, 0), "{kv:?}");
    let (_, kv) = run(&mut second, &prefix);
    assert_eq!(
        kv.reused_tokens, 1500,
        "restored from disk, then kept in memory: {kv:?}"
    );
    assert_eq!(second.tiers()[0].1.hits, 1);
}

/// Issue 24: a sweep whose windows' KV does not all fit the disk
/// budget keeps its first windows, and the next sweep in a new process
/// restores them instead of having evicted them for its last windows.
#[test]
fn a_sweep_over_the_disk_budget_keeps_its_first_windows_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    // Each window's state is 4 bytes a token: 2,000 tokens are 8,000
    // bytes, and the cap holds two and a half windows.
    let windows: Vec<Vec<u32>> = (0..4u32).map(|w| tokens(w * 10_000..w * 10_000 + 2_000)).collect();
    let sweep = |cache: &mut PrefixCache<Vec<u32>>| -> Vec<KvUse> {
        windows
            .iter()
            .map(|prefix| {
                let plan = cache.plan(prefix, 1, true).in_group(Some("sweep-a".to_owned()));
                let mut seq = Tokens::default();
                let mut kv = KvUse::default();
                let done = cache.restore(&plan, &mut seq, prefix, 1 << 20, &mut kv);
                seq.0.extend_from_slice(&prefix[done..]);
                kv.prefilled_tokens = (prefix.len() - done) as u32;
                if done < prefix.len() {
                    cache.keep(&plan, &seq, prefix, &mut kv);
                }
                kv
            })
            .collect()
    };
    let disk = || {
        PrefixCache::new(
            "model-f16".into(),
            0,
            Some(DiskTier::new(dir.path().to_path_buf(), 20_000)),
            None,
        )
    };
    let first = sweep(&mut disk());
    let unsaved: Vec<u32> = first.iter().map(|k| k.unsaved_tokens).collect();
    assert_eq!(
        unsaved,
        [0, 0, 2000, 2000],
        "the last windows are refused, the first kept"
    );
    let second = sweep(&mut disk());
    let restored: Vec<u32> = second.iter().map(|k| k.restored_tokens).collect();
    assert_eq!(restored, [2000, 2000, 0, 0], "{second:?}");
    let c = disk();
    let held: Vec<Option<u64>> = windows.iter().map(|w| c.on_disk(w, 1)).collect();
    assert_eq!(held, [Some(8000), Some(8000), Some(0), Some(0)]);
}

#[test]
fn a_prompt_sharing_only_its_first_blocks_takes_those_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let old = tokens(0..1500);
    let mut new = tokens(0..1100);
    new.extend(9000..9600);
    let mut first = cache(dir.path(), 1 << 20);
    run(&mut first, &old);
    // In memory, in the same process: two whole blocks are shared.
    let (_, kv) = run(&mut first, &new);
    assert_eq!((kv.reused_tokens, kv.prefilled_tokens), (1024, 676), "{kv:?}");
    // On disk, in a new process, without a host tier.
    let mut other = cache(dir.path(), 0);
    let mut edited = tokens(0..700);
    edited.extend(5000..6000);
    let (_, kv) = run(&mut other, &edited);
    assert_eq!((kv.restored_tokens, kv.prefilled_tokens), (512, 1188), "{kv:?}");
}

#[test]
fn a_link_to_a_state_with_other_tokens_is_never_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cache(dir.path(), 0);
    let a = tokens(0..1024);
    let b = tokens(100..1124);
    run(&mut c, &a);
    // A block of b linked to a's state (as a hash collision would):
    // the state's tokens differ, so nothing is restored.
    let disk = c.disk.clone().unwrap();
    let key_a = c.prefix_key(&a, 1);
    for block in c.block_keys(&b, 1) {
        disk.link(&block, &key_a, a.len());
    }
    let (seq, kv) = run(&mut c, &b);
    assert_eq!((kv.restored_tokens, kv.prefilled_tokens), (0, 1024), "{kv:?}");
    assert_eq!(seq.0, b);
}

#[test]
fn an_interrupted_prefill_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = tokens(0..2000);
    let c = PrefixCache::<Vec<u32>>::new(
        "model-f16".into(),
        0,
        Some(DiskTier::new(dir.path().to_path_buf(), 1 << 30)),
        Some(Duration::ZERO),
    );
    let mut plan = c.plan(&prefix, 1, true);
    let seq = Tokens(prefix[..1300].to_vec());
    c.checkpoint(&mut plan, &seq, &seq.0);
    drop(c); // the process dies before the prefix is done
    let mut again = cache(dir.path(), 0);
    let (_, kv) = run(&mut again, &prefix);
    assert_eq!((kv.restored_tokens, kv.prefilled_tokens), (1024, 976), "{kv:?}");
    let key = again.prefix_key(&prefix, 1);
    assert!(
        !again.disk.as_ref().unwrap().has(&checkpoint_key(&key)),
        "the finished prefix replaces it"
    );
}

#[test]
fn short_prefixes_are_not_kept_and_forked_prefixes_have_their_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cache(dir.path(), 1 << 20);
    let short = tokens(0..(MIN_SAVED_PREFIX as u32 - 1));
    let (_, kv) = run(&mut c, &short);
    assert_eq!((kv.saved_bytes, kv.offloaded_bytes), (0, 0));
    let (_, kv) = run(&mut c, &short);
    assert_eq!(kv.prefilled_tokens, short.len() as u32, "prefilled every time");
    let p = tokens(0..600);
    assert_ne!(c.prefix_key(&p, 1), c.prefix_key(&p, 2));
    assert_ne!(c.block_keys(&p, 1), c.block_keys(&p, 2));
    let other = PrefixCache::<Vec<u32>>::new("model-q8_0".into(), 0, None, None);
    assert_ne!(
        c.prefix_key(&p, 1),
        other.prefix_key(&p, 1),
        "the seed is part of every key"
    );
}

#[test]
fn a_damaged_state_file_is_removed_and_the_prefix_prefilled() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = tokens(0..800);
    run(&mut cache(dir.path(), 0), &prefix);
    let key = cache(dir.path(), 0).prefix_key(&prefix, 1);
    let file = dir.path().join(format!("{key}.kv"));
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let mut c = cache(dir.path(), 0);
    let (seq, kv) = run(&mut c, &prefix);
    assert_eq!((kv.restored_tokens, kv.prefilled_tokens), (0, 800), "{kv:?}");
    assert_eq!(seq.0, prefix);
}

/// Document reuse: a prompt whose first tokens changed shares no block
/// with the stored state, but the state is found by its content and
/// loaded whole (for `kv::documents` to lay the prompt out of it). Only
/// when asked, only states of the same model and KV type, and only one
/// holding a good share of the prompt's content.
#[test]
fn a_state_is_found_by_content_when_its_first_block_changed() {
    let dir = tempfile::tempdir().unwrap();
    let old = tokens(0..3000);
    run(&mut cache(dir.path(), 0), &old);
    let mut new = old.clone();
    new[10] = 99_999;
    assert!(!cache(dir.path(), 0).plan(&new, 1, true).other_state());
    let mut finding = cache(dir.path(), 0).finding_by_content(true);
    let plan = finding.plan(&new, 1, true);
    assert!(plan.other_state());
    assert_eq!(plan.context_needed(), 3000);
    let mut seq = Tokens::default();
    let found = finding.restore_other(&plan, &mut seq, 1 << 20);
    assert_eq!(found, Some((old.clone(), false)));
    assert_eq!(seq.0, old, "loaded whole, not cut");
    let other_model = PrefixCache::<Vec<u32>>::new(
        "other-model-f16".into(),
        0,
        Some(DiskTier::new(dir.path().to_path_buf(), 1 << 30)),
        None,
    )
    .finding_by_content(true);
    assert!(!other_model.plan(&new, 1, true).other_state());
    assert!(!finding.plan(&tokens(50_000..53_000), 1, true).other_state());
    // A damaged index is removed, not read in part.
    let damaged: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "chunks"))
        .collect();
    assert_eq!(damaged.len(), 1);
    let text = std::fs::read_to_string(&damaged[0]).unwrap();
    std::fs::write(&damaged[0], text.replacen('\n', "\nnot a number\n", 2)).unwrap();
    assert!(!finding.plan(&new, 1, true).other_state());
    assert!(!damaged[0].exists());
}

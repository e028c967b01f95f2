//! A re-ingest without a walk: when every folder and ignore file a clean
//! walk watched is as it recorded them (and the roots, options and
//! environment are the same), the recorded listing's entries are handed to
//! the same per-entry logic as a walk, instead of walking; and the
//! recording of a listing while a walk runs.
//!
//! Never trusts a listing it cannot check: any change means a walk.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use super::*;
use crate::ingest::listing::{self, Entry, Listing, Watched};

/// The listing kept as `bytes`, when it still holds for a walk of `roots`
/// with `opts`: what [`WalkOptions::listing`] takes. (Every folder the
/// listing names is stat'ed: a few milliseconds for a large tree, which
/// the caller may spend while it does something else.)
#[must_use]
pub fn check_listing(roots: &[PathBuf], opts: &WalkOptions, bytes: &[u8]) -> Option<Listing> {
    let excluded = real_excluded(opts);
    let key = key_for(roots, opts, &excluded)?;
    Listing::read_if_holds(bytes, &key)
}

/// What a listing of `roots` walked with `opts` is kept under; `None`
/// when no listing can stand in for such a walk (links followed, a root
/// that is a file, or not Unix, where folder times are not checked).
pub(super) fn key_for(roots: &[PathBuf], opts: &WalkOptions, excluded: &[PathBuf]) -> Option<String> {
    if opts.follow_links || !cfg!(unix) || !roots.iter().all(|r| r.is_dir()) {
        return None;
    }
    let real: Vec<PathBuf> = roots.iter().map(|r| r.canonicalize().ok()).collect::<Option<_>>()?;
    Some(format!(
        "roots={roots:?} real={real:?} hidden={} no_ignore={} include={:?} exclude={:?} never={excluded:?} env={}",
        opts.hidden,
        opts.no_ignore,
        opts.include,
        opts.exclude_globs,
        listing::environment_key(),
    ))
}

/// Hands the entries of a listing that still holds to the same per-entry
/// logic as a walk, on as many threads as a walk would use.
pub(super) fn replay_listing(listing: &Arc<Listing>, ctx: &Context<'_>, tx: &mpsc::Sender<Vec<WalkItem>>) {
    let threads = walkers(ctx.opts);
    // Threads take runs of entries in turn (a changed file read on one
    // does not hold the others up); entries are in path order, so a run
    // lies in few folders.
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut batch = Batch {
                    items: Vec::new(),
                    tx: tx.clone(),
                };
                let mut folders = Folders::default();
                // Unchanged files go by their places in the listing, many
                // at a time: most of a tree is unchanged.
                let mut unchanged = Vec::new();
                let hand_over = |unchanged: &mut Vec<u32>, batch: &mut Batch| {
                    unchanged.is_empty()
                        || batch.push(WalkItem::UnchangedListed {
                            listing: Arc::clone(listing),
                            entries: std::mem::take(unchanged),
                        })
                };
                loop {
                    let start = next.fetch_add(REPLAY_RUN, Ordering::Relaxed);
                    let Some(run) = listing
                        .entries
                        .get(start..listing.entries.len().min(start + REPLAY_RUN))
                    else {
                        hand_over(&mut unchanged, &mut batch);
                        return;
                    };
                    for (i, e) in (start..).zip(run) {
                        let v = Visit {
                            path: listing.path(e),
                            shown: Some(listing.shown(e)),
                            depth: e.depth as usize,
                            ino: (e.ino != 0).then_some(e.ino),
                            is_dir: e.is_dir,
                            is_file: e.is_file,
                            is_symlink: e.is_symlink,
                            known: Known::Listed(e.known),
                        };
                        let item = match visit(&v, ctx, &mut folders) {
                            Visited::Folder | Visited::Deferred(_) => continue,
                            Visited::Unchanged(_) => {
                                unchanged.push(i as u32);
                                continue;
                            }
                            Visited::SkipFolder(item) | Visited::Item(item) => item,
                        };
                        if !batch.push(item) {
                            return;
                        }
                    }
                    if unchanged.len() >= UNCHANGED_BATCH * 16 && !hand_over(&mut unchanged, &mut batch) {
                        return;
                    }
                }
            });
        }
    });
}

/// Entries a replay thread takes at a time.
pub(super) const REPLAY_RUN: usize = 128;

/// What a walk saw, gathered by its workers for a [`Listing`].
#[derive(Default)]
pub(super) struct Recording {
    /// Nothing is to be recorded: an error, a walk cut short, or no key.
    pub(super) spoiled: bool,
    pub(super) watched: Vec<Watched>,
    /// Each with its shown path.
    pub(super) entries: Vec<(String, Entry)>,
}

impl Recording {
    /// Takes in what one worker saw.
    pub(super) fn merge(&mut self, mut other: Recording) {
        self.spoiled |= other.spoiled;
        if !self.spoiled {
            self.watched.append(&mut other.watched);
            self.entries.append(&mut other.entries);
        }
    }

    /// Notes a folder the walk entered, with the ignore files in it that
    /// could decide what is taken from it (an ignore file that is not
    /// there need not be watched: making one changes the folder).
    pub(super) fn folder(&mut self, path: &Path, depth: usize, opts: &WalkOptions) {
        if self.spoiled {
            return;
        }
        self.watched.push(Watched::now(path.to_owned(), depth == 0));
        if opts.no_ignore {
            return;
        }
        for name in listing::IGNORE_FILES {
            let w = Watched::now(path.join(name), true);
            if w.stamp.is_some() {
                self.watched.push(w);
            }
        }
        match std::fs::metadata(path.join(".git")) {
            Err(_) => {}
            Ok(m) if m.is_dir() => self.watched.push(Watched::now(path.join(".git/info/exclude"), true)),
            // A `.git` file points at a git folder elsewhere, whose
            // exclude file is not watched: no listing.
            Ok(_) => self.spoiled = true,
        }
    }

    /// The listing, with the ignore files above each root and git's
    /// global ones; `None` when it cannot be trusted: spoiled, or some
    /// stamp too close to the walk's start to show a later change.
    pub(super) fn finish(
        mut self,
        key: String,
        roots: &[PathBuf],
        opts: &WalkOptions,
        started_ns: i64,
    ) -> Option<Listing> {
        if self.spoiled {
            return None;
        }
        if !opts.no_ignore {
            for root in roots {
                let real = root.canonicalize().ok()?;
                for dir in real.ancestors().skip(1) {
                    for name in listing::IGNORE_FILES {
                        self.watched.push(Watched::now(dir.join(name), true));
                    }
                    let git = dir.join(".git");
                    match std::fs::metadata(&git) {
                        Ok(m) if !m.is_dir() => return None,
                        // A folder here is watched only for being the
                        // same folder (git changes its times all along).
                        Ok(_) => self.watched.push(Watched::identity(git, true)),
                        Err(_) => self.watched.push(Watched::now(git, true)),
                    }
                    self.watched.push(Watched::now(dir.join(".git/info/exclude"), true));
                }
            }
            self.watched.extend(
                listing::global_ignore_paths()
                    .into_iter()
                    .map(|p| Watched::now(p, true)),
            );
        }
        if self.watched.iter().any(|w| w.is_racy(started_ns)) {
            return None;
        }
        Some(Listing::new(key, self.watched, self.entries))
    }
}

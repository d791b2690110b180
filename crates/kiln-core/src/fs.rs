//! File helpers shared by every crate that writes user data (adapters, checkpoints, configs).

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and renamed,
/// so readers see the old file or the new one, never a partial one (a process killed mid-write
/// leaves at most a stray `.NAME.tmp-PID` file).
///
/// # Errors
/// The I/O error of creating, writing, syncing or renaming the temporary file (which is removed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (dir, prefix) = temporaries_of(path);
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The folder of [`write_atomic`]'s temporaries for `path` and their name before the pid
/// (`.NAME.tmp-`).
fn temporaries_of(path: &Path) -> (&Path, String) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    (dir, format!(".{file_name}.tmp-"))
}

/// Removes the temporaries that [`write_atomic`] calls for `path` left behind when their process
/// was killed (`.NAME.tmp-PID` whose process no longer runs, on Linux). Temporaries of live
/// processes are left alone, so concurrent writers are not disturbed.
pub fn remove_stale_temporaries(path: &Path) {
    let (dir, prefix) = temporaries_of(path);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id()
            || !Path::new("/proc/self").exists()
            || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("kiln-core-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.json");
        super::write_atomic(&p, b"one").unwrap();
        super::write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let missing = dir.join("no/such/dir/b.json");
        assert!(super::write_atomic(&missing, b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed_live_ones_kept() {
        let dir = std::env::temp_dir().join(format!("kiln-core-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("w.bin");
        // 4294967 is above Linux's largest pid, so no process has it.
        let dead = dir.join(".w.bin.tmp-4294967");
        let live = dir.join(format!(".w.bin.tmp-{}", std::process::id()));
        let other = dir.join(".other.bin.tmp-4294967");
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        super::remove_stale_temporaries(&target);
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

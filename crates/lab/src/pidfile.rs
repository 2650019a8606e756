//! Pid files for the containers the node runtimes start, so a supervisor started over a lab
//! whose supervisor was killed finds them: they outlive it, reparented. Each file holds the pid and the process's
//! start time, so a pid the kernel has since given to another process is not taken for it.

use std::path::Path;

/// Records that `pid` (just started) runs what `file` names.
pub fn write(file: &Path, pid: u32) -> std::io::Result<()> {
    let started = start_time(pid).ok_or_else(|| std::io::Error::other(format!("process {pid} is gone")))?;
    std::fs::write(file, format!("{pid} {started}\n"))
}

/// The pid `file` records, if that process still runs (a zombie does not).
pub fn live(file: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut words = text.split_whitespace();
    let pid: u32 = words.next()?.parse().ok()?;
    let started: u64 = words.next()?.parse().ok()?;
    (start_time(pid) == Some(started)).then_some(pid)
}

/// When `pid` started (clock ticks after boot), None when it is gone or a zombie.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the fields after it start at the last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // Field 3 is the state, field 22 the start time.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

/// SIGKILLs the process `file` records, if it runs, and waits (up to 2 s) until it is gone.
pub fn kill(file: &Path) {
    let Some(pid) = live(file) else { return };
    // SAFETY: kill(2) on a process the pid file names, checked above to be the one it recorded.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while live(file).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_its_process_while_it_runs() {
        let file = std::env::temp_dir().join(format!("weft-pidfile-{}", crate::store::new_uid()));
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        write(&file, child.id()).unwrap();
        assert_eq!(live(&file), Some(child.id()));
        kill(&file);
        // A zombie (not yet reaped) counts as gone.
        assert_eq!(live(&file), None);
        child.wait().unwrap();
        std::fs::write(&file, format!("{} 1\n", std::process::id())).unwrap();
        assert_eq!(live(&file), None, "another start time: another process");
        std::fs::remove_file(&file).unwrap();
    }
}

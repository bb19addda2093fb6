//! `msbreg bench`'s parts that drive processes: the thread sweep of `bench train`, and the
//! comparison of two builds (`bench train --against`).

/// `bench train`'s thread options: checks them, runs the comparison with another build or the
/// thread sweep in other processes (`true`: nothing is left to do here), or else sets this
/// process's pool to the one count given.
///
/// # Errors
/// A count of 0, a pool that cannot be built, a child process that fails.
pub fn train_threads(
    threads: &[usize],
    runs: usize,
    against: Option<&std::path::Path>,
) -> anyhow::Result<bool> {
    if threads.contains(&0) {
        anyhow::bail!("--threads 0: give a number of threads from 1 up");
    }
    if let Some(other) = against {
        train_against(other, threads, runs)?;
        return Ok(true);
    }
    if threads.len() > 1 {
        train_sweep(threads)?;
        return Ok(true);
    }
    if let Some(&count) = threads.first() {
        // Before anything touches rayon (choosing the backend does): the loader, flex and gemm
        // all run on this pool.
        rayon::ThreadPoolBuilder::new()
            .num_threads(count)
            .build_global()
            .map_err(|err| anyhow::anyhow!("--threads {count}: {err}"))?;
    }
    Ok(false)
}

/// `bench train --threads 1,2,...`: one process per count (rayon's global pool is fixed per
/// process), its output passed through, then a table of the counts side by side.
pub fn train_sweep(threads: &[usize]) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let exe = std::env::current_exe()?;
    // This invocation's arguments without its --threads, which each child gets one value of.
    let args = args_without(&["--threads"], &[]);
    let mut rows = Vec::new();
    for &count in threads {
        println!("== --threads {count}");
        let mut child = std::process::Command::new(&exe)
            .args(&args)
            .args(["--threads", &count.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut last_json = None;
        if let Some(stdout) = child.stdout.take() {
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line?;
                println!("{line}");
                if line.starts_with('{') {
                    last_json = serde_json::from_str::<serde_json::Value>(&line).ok();
                }
            }
        }
        let status = child.wait()?;
        if !status.success() {
            anyhow::bail!("bench train --threads {count} failed ({status})");
        }
        let json = last_json
            .ok_or_else(|| anyhow::anyhow!("bench train --threads {count} printed no result"))?;
        rows.push((count, json));
    }
    let value =
        |json: &serde_json::Value, key: &str| json.get(key).and_then(serde_json::Value::as_f64);
    println!();
    println!(
        "{:>7} {:>12} {:>12} {:>12} {:>8} {:>14} {:>11} {:>11}",
        "threads",
        "msbreg",
        "with loader",
        "PyTorch",
        "ratio",
        "ratio (loader)",
        "msbreg x1",
        "PyTorch x1"
    );
    let first = rows.first().map(|(_, json)| json.clone());
    for (count, json) in &rows {
        let ours = value(json, "images_per_sec");
        let theirs = value(json, "torch_images_per_sec");
        let cell = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
        };
        let times = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"));
        let scale = |key: &str| {
            first
                .as_ref()
                .and_then(|f| value(f, key))
                .zip(value(json, key))
                .map(|(a, b)| b / a)
        };
        println!(
            "{:>7} {:>12} {:>12} {:>12} {:>8} {:>14} {:>11} {:>11}",
            count,
            cell(ours, 0),
            cell(value(json, "images_per_sec_with_loader"), 0),
            cell(theirs, 0),
            times(value(json, "ratio_to_torch")),
            times(value(json, "ratio_to_torch_with_loader")),
            times(scale("images_per_sec")),
            times(scale("torch_images_per_sec")),
        );
    }
    println!("(images/s, medians over --runs; \"x1\": against the first count of the list)");
    println!(
        "{}",
        serde_json::json!({"bench": "train-threads", "results": rows.iter().map(|(count, json)| {
            serde_json::json!({"threads": count, "result": json})
        }).collect::<Vec<_>>()})
    );
    Ok(())
}

/// This invocation's arguments less the named options (each with its value, in both the
/// `--name value` and `--name=value` forms) and the named flags.
fn args_without(options: &[&str], flags: &[&str]) -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    let mut skip_next = false;
    for arg in std::env::args_os().skip(1) {
        if skip_next {
            skip_next = false;
            continue;
        }
        let text = arg.to_string_lossy();
        if options.iter().any(|name| text == *name) {
            skip_next = true;
            continue;
        }
        let with_value = options
            .iter()
            .any(|name| text.starts_with(&format!("{name}=")));
        if with_value || flags.iter().any(|name| text == *name) {
            continue;
        }
        args.push(arg);
    }
    args
}

/// Images/s (random inputs) of one `bench train` by `exe` on `threads` threads, set through
/// `RAYON_NUM_THREADS` so that builds from before `--threads` existed take part too.
fn images_per_sec(
    exe: &std::path::Path,
    args: &[std::ffi::OsString],
    threads: Option<usize>,
) -> anyhow::Result<f64> {
    let mut command = std::process::Command::new(exe);
    command.args(["bench", "train"]).args(args);
    if let Some(count) = threads {
        command.env("RAYON_NUM_THREADS", count.to_string());
    }
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|err| anyhow::anyhow!("could not run {}: {err}", exe.display()))?;
    if !output.status.success() {
        anyhow::bail!(
            "{} bench train failed ({}); is it an msbreg build?",
            exe.display(),
            output.status
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .rev()
        .find_map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).ok()?;
            json.get("images_per_sec")?.as_f64()
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} bench train printed no images_per_sec (an msbreg build older than its JSON line?)",
                exe.display()
            )
        })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        f64::midpoint(sorted[middle - 1], sorted[middle])
    }
}

/// `bench train --against OTHER`: this build and `other` alternately, `runs` times per thread
/// count, each run its own process; a table of medians, ranges and the median ratio. On a
/// shared, noisy machine single runs of one build vary by up to 30%: alternating is what makes
/// a comparison of two builds mean something.
pub fn train_against(
    other: &std::path::Path,
    threads: &[usize],
    runs: usize,
) -> anyhow::Result<()> {
    if !other.is_file() {
        anyhow::bail!(
            "--against {}: no such file; give the path of another msbreg binary",
            other.display()
        );
    }
    let this = std::env::current_exe()?;
    let args = args_without(
        &[
            "--threads",
            "--against",
            "--runs",
            "--torch",
            "--torch-script",
            "--torch-device",
        ],
        &["--profile", "train", "bench"],
    );
    let counts: Vec<Option<usize>> = if threads.is_empty() {
        vec![None]
    } else {
        threads.iter().copied().map(Some).collect()
    };
    let runs = runs.max(1);
    let mut rows = Vec::new();
    for &count in &counts {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for run in 1..=runs {
            let ours_now = images_per_sec(&this, &args, count)?;
            let theirs_now = images_per_sec(other, &args, count)?;
            let threads = count.map_or_else(|| "all".to_owned(), |c| c.to_string());
            println!(
                "threads {threads}, run {run}/{runs}: this build {ours_now:.0} images/s, {} {theirs_now:.0}",
                other.display()
            );
            ours.push(ours_now);
            theirs.push(theirs_now);
        }
        rows.push((count, ours, theirs));
    }
    println!();
    println!(
        "{:>7} {:>12} {:>17} {:>12} {:>17} {:>8}",
        "threads", "this build", "range", "other", "range", "ratio"
    );
    let range = |v: &[f64]| {
        let low = v.iter().copied().fold(f64::INFINITY, f64::min);
        let high = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{low:.0}-{high:.0}")
    };
    let mut results = Vec::new();
    for (count, ours, theirs) in &rows {
        let ratio = median(ours) / median(theirs);
        println!(
            "{:>7} {:>12.0} {:>17} {:>12.0} {:>17} {:>7.2}x",
            count.map_or_else(|| "all".to_owned(), |c| c.to_string()),
            median(ours),
            range(ours),
            median(theirs),
            range(theirs),
            ratio
        );
        results.push(
            serde_json::json!({"threads": count, "this": ours, "other": theirs,
            "median_ratio": ratio}),
        );
    }
    println!(
        "(images/s with random inputs, medians of {runs} alternated runs; ratio: this build's median / the other's; other: {})",
        other.display()
    );
    println!(
        "{}",
        serde_json::json!({"bench": "train-against", "other": other.display().to_string(),
            "results": results})
    );
    Ok(())
}

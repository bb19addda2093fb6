//! `msbreg bench`'s parts that drive processes: the thread sweep of `bench train`.

/// `bench train --threads 1,2,...`: one process per count (rayon's global pool is fixed per
/// process), its output passed through, then a table of the counts side by side.
pub fn train_sweep(threads: &[usize]) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let exe = std::env::current_exe()?;
    // This invocation's arguments without its --threads, which each child gets one value of.
    let mut args = Vec::new();
    let mut skip_next = false;
    for arg in std::env::args_os().skip(1) {
        if skip_next {
            skip_next = false;
            continue;
        }
        let text = arg.to_string_lossy();
        if text == "--threads" {
            skip_next = true;
            continue;
        }
        if text.starts_with("--threads=") {
            continue;
        }
        args.push(arg);
    }
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

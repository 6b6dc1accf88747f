//! `jitca completions SHELL` and `jitca man`: generated from the clap definitions in `cli.rs`,
//! so they always match the flags the binary takes.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The completion script for `shell` on stdout.
pub fn completions(shell: Shell) -> Result<()> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "jitca", &mut out);
    write_stdout(&out)
}

/// `jitca(1)` on stdout, or with `dir` every page (`jitca.1`, `jitca-serve.1`, ...) written
/// there.
pub fn man(dir: Option<&Path>) -> Result<()> {
    let command = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write the pages in {}", dir.display()))?;
            Ok(())
        }
        None => write_stdout(&one_page(command)?),
    }
}

/// `jitca(1)` with every command's synopsis, description and options in a COMMANDS section,
/// so the one page is the whole manual.
fn one_page(command: clap::Command) -> Result<Vec<u8>> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let mut out = Vec::new();
    let page = clap_mangen::Man::new(command.clone());
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    page.render_options_section(&mut out)?;
    out.extend_from_slice(b".SH COMMANDS\n");
    let mut queue: Vec<clap::Command> = command.get_subcommands().cloned().collect();
    while !queue.is_empty() {
        let sub = queue.remove(0);
        if sub.is_hide_set() {
            continue;
        }
        let name = sub
            .get_bin_name()
            .unwrap_or_else(|| sub.get_name())
            .to_string();
        let nested: Vec<clap::Command> = sub.get_subcommands().cloned().collect();
        let man = clap_mangen::Man::new(sub.clone());
        let mut body = Vec::new();
        man.render_synopsis_section(&mut body)?;
        man.render_description_section(&mut body)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut body)?;
        }
        out.extend_from_slice(format!(".SS \"{name}\"\n").as_bytes());
        out.extend_from_slice(&demote(&body));
        // Nested commands (`audit verify`) right after their parent.
        for (i, n) in nested.into_iter().enumerate() {
            queue.insert(i, n);
        }
    }
    page.render_version_section(&mut out)?;
    Ok(once_preamble(&out))
}

/// Each render starts with roff's apostrophe preamble (`.ie \\n(.g .ds Aq ...`): keep the first.
fn once_preamble(roff: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(roff);
    let mut seen = 0;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
            seen += 1;
            if seen > 2 {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

/// Rendered sections as part of a subsection: `.SH TITLE` becomes an italic paragraph heading.
fn demote(roff: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(roff);
    let mut out = String::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix(".SH ") {
            out.push_str(&format!(".PP\n\\fI{}\\fR\n", title.trim_matches('"')));
            if title.trim_matches('"') == "SYNOPSIS" || title.trim_matches('"') == "DESCRIPTION" {
                out.push_str(".br\n");
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

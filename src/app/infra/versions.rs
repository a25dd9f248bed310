//! Which Terraform or OpenTofu binary the infra phase runs: the version the configuration asks for (`terraform-version`, `required_version`, `.terraform-version` / `.opentofu-version`, `.tool-versions`), the bundled binary whenever it satisfies, else a verified release from the tool cache or downloaded into it.

use std::path::{Path, PathBuf};

use super::Error;
use crate::adapters::releases::Releases;
use crate::adapters::terraform::Terraform;
use crate::app::frame::RunContext;
use crate::plan::argv::Cli;
use crate::plan::versions::{self, Choice, Constraint, Wanted};

/// The binary to run, and why it is that one (`None`: nothing asked for a version).
pub(super) async fn select(
    run: &RunContext<'_>,
    directory: &Path,
) -> Result<(Terraform, Option<String>), Error> {
    let infra = &run.config.infra;
    let cli = if infra.binary == "tofu" || infra.binary.ends_with("/tofu") {
        Cli::OpenTofu
    } else {
        Cli::Terraform
    };
    let wanted = wanted(run, directory, cli)?;
    let bundled = Terraform::discover(&infra.binary, directory).await;
    let Some(wanted) = wanted else {
        return bundled.map(|t| (t, None)).map_err(Error::Terraform);
    };
    if let Ok(terraform) = &bundled {
        if wanted.constraint.matches(terraform.version()) {
            let why = format!(
                "the bundled binary satisfies `{}` ({})",
                wanted.constraint, wanted.source
            );
            return bundled.map(|t| (t, Some(why))).map_err(Error::Terraform);
        }
        if infra.binary.starts_with('/') {
            return Err(Error::Version(format!(
                "terraform-binary {} is {} {}, which does not satisfy `{}` ({}); give a binary that does, or `{}` to let gantry fetch one",
                infra.binary,
                terraform.cli().name(),
                terraform.version(),
                wanted.constraint,
                wanted.source,
                cli.command()
            )));
        }
    }
    let bundled_version = bundled.as_ref().ok().map(|t| t.version());
    let releases = Releases::of(cli);
    let cache = cache_dir();
    let version = match wanted.constraint.exact() {
        Some(version) => version,
        None => {
            let published = releases.published().await.map_err(|err| {
                Error::Version(format!(
                    "{} `{}` ({}) is not the bundled version{} and the published versions could not be read: {err}",
                    cli.name(),
                    wanted.constraint,
                    wanted.source,
                    bundled_version.map(|v| format!(" ({v})")).unwrap_or_default()
                ))
            })?;
            match versions::choose(&wanted, bundled_version, &published) {
                Ok(Choice::Download(version)) => version,
                // The bundled binary satisfies (checked above, so not reached in practice).
                Ok(Choice::Bundled) => return bundled.map(|t| (t, None)).map_err(Error::Terraform),
                Err(why) => {
                    return Err(Error::Version(format!(
                        "{} from {}: {why}",
                        cli.name(),
                        releases.source()
                    )))
                }
            }
        }
    };
    let (path, how) = match releases.cached(&cache, version) {
        Some(path) => (path, "from the tool cache".to_string()),
        None => {
            let installed = releases.install(&cache, version).await.map_err(|err| {
                Error::Version(format!(
                    "{} {version} ({}) could not be installed: {err}",
                    cli.name(),
                    wanted.source
                ))
            })?;
            (
                installed.path,
                format!(
                    "downloaded from {}, its SHA256SUMS signed by {} and matching, cached in {}",
                    releases.source(),
                    installed.signer,
                    cache.display()
                ),
            )
        }
    };
    let terraform = Terraform::with_binary(path.clone(), directory)
        .await
        .map_err(Error::Terraform)?;
    if terraform.cli() != cli || terraform.version() != version {
        return Err(Error::Version(format!(
            "{} reports {} {}, not {} {version}: the release is not what it says; remove it from the tool cache",
            path.display(),
            terraform.cli().name(),
            terraform.version(),
            cli.name()
        )));
    }
    let why = format!(
        "{} asks for `{}`{}; {how}",
        wanted.source,
        wanted.constraint,
        match bundled_version {
            Some(bundled) => format!(", which the bundled {bundled} does not satisfy"),
            None => String::new(),
        }
    );
    Ok((terraform, Some(why)))
}

/// Where verified releases are kept between steps: `GANTRY_TOOL_CACHE`, else the home
/// directory's cache (`/github/home` in a container action).
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GANTRY_TOOL_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".cache/gantry/tools"))
        .unwrap_or_else(|| std::env::temp_dir().join("gantry-tools"))
}

/// What the configuration asks for, in order: the input, `required_version`, then the first
/// version file found from the Terraform directory up to the checkout.
fn wanted(run: &RunContext<'_>, directory: &Path, cli: Cli) -> Result<Option<Wanted>, Error> {
    let refused = |source: &str, problem: String| Error::Version(format!("{source}: {problem}"));
    if let Some(text) = &run.config.infra.version {
        return Constraint::parse(text)
            .map(|constraint| {
                Some(Wanted {
                    constraint,
                    source: "input terraform-version".into(),
                })
            })
            .map_err(|p| refused("terraform-version", p));
    }
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(directory) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tf") {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    files.push((
                        path.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .to_string(),
                        text,
                    ));
                }
            }
        }
    }
    files.sort();
    let required = versions::required_versions(&files);
    if !required.is_empty() {
        let text = required
            .iter()
            .map(|(c, _)| c.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let names: Vec<&str> = required.iter().map(|(_, f)| f.as_str()).collect();
        let source = format!("required_version in {}", names.join(", "));
        return Constraint::parse(&text)
            .map(|constraint| {
                Some(Wanted {
                    constraint,
                    source: source.clone(),
                })
            })
            .map_err(|p| refused(&source, p));
    }
    let version_files: &[&str] = match cli {
        Cli::OpenTofu => &[".opentofu-version", ".terraform-version"],
        Cli::Terraform => &[".terraform-version"],
    };
    let tool = match cli {
        Cli::OpenTofu => "opentofu",
        Cli::Terraform => "terraform",
    };
    let mut dir = Some(directory);
    while let Some(current) = dir {
        for name in version_files {
            let file = current.join(name);
            if let Ok(text) = std::fs::read_to_string(&file) {
                let source = file.display().to_string();
                return versions::terraform_version_file(&text)
                    .map(|constraint| {
                        Some(Wanted {
                            constraint,
                            source: source.clone(),
                        })
                    })
                    .map_err(|p| refused(&source, p));
            }
        }
        let tools = current.join(".tool-versions");
        if let Ok(text) = std::fs::read_to_string(&tools) {
            if let Some(version) = versions::tool_versions(&text, tool) {
                let source = format!("{} ({tool})", tools.display());
                return Constraint::parse(&version)
                    .map(|constraint| {
                        Some(Wanted {
                            constraint,
                            source: source.clone(),
                        })
                    })
                    .map_err(|p| refused(&source, p));
            }
        }
        if current == run.config.workspace {
            break;
        }
        dir = current
            .parent()
            .filter(|p| p.starts_with(&run.config.workspace));
    }
    Ok(None)
}

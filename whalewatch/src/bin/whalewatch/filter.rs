//! `--filter KEY=VALUE`, as docker's: filters of one key are alternatives,
//! filters of different keys must all hold.

use std::sync::Arc;

use whalewatcher::{Container, EngineInfo, Portfolio};

/// One `--filter`.
#[derive(Clone, Debug)]
pub enum Filter {
    /// `label=KEY` (present) or `label=KEY=VALUE` (equal).
    Label(String, Option<String>),
    /// `name=TEXT`: the name contains TEXT.
    Name(String),
    /// `project=NAME`: in the compose project NAME (`-` for none).
    Project(String),
    /// `pod=NAME` or `pod=NAMESPACE/NAME`.
    Pod(String),
    /// `engine=TYPE-OR-API`: the engine's type (`docker.com`, `podman.io`,
    /// `containerd.io`, `k8s.io/cri-api`) or its API endpoint.
    Engine(String),
}

/// The keys `--filter` takes, for its help and errors.
pub const KEYS: &str = "label, name, project, pod, engine";

impl std::str::FromStr for Filter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not KEY=VALUE (keys: {KEYS})"))?;
        let value = value.to_owned();
        Ok(match key {
            "label" => match value.split_once('=') {
                Some((key, value)) => Filter::Label(key.to_owned(), Some(value.to_owned())),
                None => Filter::Label(value, None),
            },
            "name" => Filter::Name(value),
            "project" => Filter::Project(value),
            "pod" => Filter::Pod(value),
            "engine" => Filter::Engine(value),
            other => return Err(format!("unknown filter key {other:?} (keys: {KEYS})")),
        })
    }
}

impl Filter {
    fn key(&self) -> &'static str {
        match self {
            Filter::Label(..) => "label",
            Filter::Name(_) => "name",
            Filter::Project(_) => "project",
            Filter::Pod(_) => "pod",
            Filter::Engine(_) => "engine",
        }
    }

    fn matches(&self, engine: &EngineInfo, container: &Container) -> bool {
        match self {
            Filter::Label(key, value) => match (container.labels().get(key), value) {
                (Some(found), Some(wanted)) => found == wanted,
                (found, None) => found.is_some(),
                (None, Some(_)) => false,
            },
            Filter::Name(text) => container.name().contains(text.as_str()),
            Filter::Project(name) => {
                container.project() == name || (name == "-" && container.project().is_empty())
            }
            Filter::Pod(wanted) => container.pod().is_some_and(|pod| {
                *pod.name == **wanted || format!("{}/{}", pod.namespace, pod.name) == *wanted
            }),
            Filter::Engine(wanted) => engine.engine_type == *wanted || engine.api == *wanted,
        }
    }
}

/// Whether `container` of `engine` passes every key of `filters`: for each
/// key given, at least one of its filters.
pub fn passes(filters: &[Filter], engine: &EngineInfo, container: &Container) -> bool {
    filters.iter().all(|filter| {
        filters
            .iter()
            .filter(|other| other.key() == filter.key())
            .any(|other| other.matches(engine, container))
    })
}

/// The containers of `portfolio` that pass `filters`, as every mode shows
/// them: by project, then by name.
pub fn shown<'p>(
    filters: &[Filter],
    engine: &EngineInfo,
    portfolio: &'p Portfolio,
) -> Vec<&'p Arc<Container>> {
    let mut containers: Vec<_> = portfolio
        .containers()
        .filter(|c| passes(filters, engine, c))
        .collect();
    containers.sort_by(|a, b| by_project_and_name(a, b));
    containers
}

/// The order of every mode: by project, then by name.
pub fn by_project_and_name(a: &Container, b: &Container) -> std::cmp::Ordering {
    (a.project(), a.name()).cmp(&(b.project(), b.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> EngineInfo {
        EngineInfo {
            engine_type: "docker.com".into(),
            api: "unix:///run/docker.sock".into(),
            ..EngineInfo::default()
        }
    }

    fn parsed(filters: &[&str]) -> Vec<Filter> {
        filters.iter().map(|f| f.parse().unwrap()).collect()
    }

    #[test]
    fn one_key_is_alternatives_and_keys_must_all_hold() {
        let web = Container::new("1", "shop-web", 10)
            .with_labels([("tier", "front"), ("com.docker.compose.project", "shop")])
            .with_project("shop");
        let solo = Container::new("2", "solo", 11);
        let both = parsed(&["name=web", "name=solo"]);
        assert!(passes(&both, &engine(), &web) && passes(&both, &engine(), &solo));
        let and = parsed(&["name=web", "label=tier=front", "project=shop"]);
        assert!(passes(&and, &engine(), &web));
        assert!(!passes(&parsed(&["label=tier=back"]), &engine(), &web));
        assert!(passes(&parsed(&["label=tier"]), &engine(), &web));
        assert!(passes(&parsed(&["project=-"]), &engine(), &solo));
        assert!(!passes(&parsed(&["project=-"]), &engine(), &web));
        assert!(passes(&parsed(&["engine=docker.com"]), &engine(), &solo));
        assert!(!passes(&parsed(&["engine=podman.io"]), &engine(), &solo));
        assert!(passes(&[], &engine(), &solo));
    }

    #[test]
    fn a_bad_filter_says_which_keys_there_are() {
        let err = "colour=red".parse::<Filter>().unwrap_err();
        assert!(
            err.contains("unknown filter key \"colour\"") && err.contains(KEYS),
            "{err}"
        );
        assert!("label".parse::<Filter>().unwrap_err().contains("KEY=VALUE"));
    }
}

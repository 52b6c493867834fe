use std::fmt;

use crate::model::Name;

/// One PolicyRule of a Role or ClusterRole, as the engine keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub verbs: Vec<Name>,
    pub api_groups: Vec<Name>,
    pub resources: Vec<Name>,
    pub resource_names: Vec<Name>,
    pub non_resource_urls: Vec<Name>,
}

impl Rule {
    /// Every name of the rule, as [`names_mut`](Self::names_mut) gives them.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.verbs
            .iter()
            .chain(&self.api_groups)
            .chain(&self.resources)
            .chain(&self.resource_names)
            .chain(&self.non_resource_urls)
    }

    pub fn names_mut(&mut self) -> impl Iterator<Item = &mut Name> {
        self.verbs
            .iter_mut()
            .chain(self.api_groups.iter_mut())
            .chain(self.resources.iter_mut())
            .chain(self.resource_names.iter_mut())
            .chain(self.non_resource_urls.iter_mut())
    }
}

/// For people: `get,list secrets` , `create deployments.apps [web]`,
/// `get /metrics`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", join(&self.verbs))?;
        if !self.resources.is_empty() {
            let groups: Vec<&str> = self.api_groups.iter().map(|g| &**g).collect();
            let targets: Vec<String> = self
                .resources
                .iter()
                .flat_map(|r| {
                    let groups = groups.clone();
                    groups.into_iter().map(move |g| {
                        if g.is_empty() {
                            r.to_string()
                        } else {
                            format!("{r}.{g}")
                        }
                    })
                })
                .collect();
            write!(f, " {}", targets.join(","))?;
            if !self.resource_names.is_empty() {
                write!(f, " [{}]", join(&self.resource_names))?;
            }
        }
        if !self.non_resource_urls.is_empty() {
            write!(f, " {}", join(&self.non_resource_urls))?;
        }
        Ok(())
    }
}

fn join(xs: &[Name]) -> String {
    xs.iter().map(|x| &**x).collect::<Vec<_>>().join(",")
}

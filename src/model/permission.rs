use crate::model::Name;

/// A permission of a duty: a set of requests (R4.1), where `*` means "any".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permission {
    pub verbs: Vec<Name>,
    pub api_groups: Vec<Name>,
    pub resources: Vec<Name>,
    pub resource_names: Vec<Name>,
    pub non_resource_urls: Vec<Name>,
}

impl Permission {
    pub fn is_non_resource(&self) -> bool {
        self.resources.is_empty() && !self.non_resource_urls.is_empty()
    }
}

//! What a tool is, as the model, `tools.catalog` and `tools.effective` see it.

use serde_json::{Value, json};

use crate::model::openai::{Schema, ToolSpec};

/// Where a tool comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ToolSource {
    /// Built into the gateway (`exec`, the tool-search trio).
    Builtin,
    /// A paired node's commands, through the `nodes` tool.
    Node,
    /// An MCP server's tool (`<server>__<tool>`).
    Mcp,
    /// A skill's instructions.
    Skill,
}

impl ToolSource {
    /// The name `tools.catalog` reports (upstream's `source`).
    pub fn as_str(self) -> &'static str {
        match self {
            ToolSource::Builtin => "core",
            ToolSource::Node => "node",
            ToolSource::Mcp => "mcp",
            ToolSource::Skill => "skill",
        }
    }
}

/// Whether a tool can be called now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    /// It can.
    Ready,
    /// It cannot, and why (a server that failed to start, a policy that denies it); the
    /// catalog shows the reason, the model is not offered the tool.
    Unavailable(String),
}

/// One tool of the catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolEntry {
    /// The name the model calls it by (unique over the catalog).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Its arguments as a JSON schema (an `object` schema), shared: offering the tool to a
    /// turn's model copies no schema.
    pub parameters: Schema,
    /// Where it comes from.
    pub source: ToolSource,
    /// The provider's own label (an MCP server's name, a node's id), if any.
    pub origin: Option<String>,
    /// Whether it can be called now.
    pub availability: Availability,
}

impl ToolEntry {
    /// A ready tool.
    pub fn new(name: &str, description: &str, parameters: Value, source: ToolSource) -> Self {
        Self {
            name: name.to_string(),
            description: description.to_string(),
            parameters: parameters.into(),
            source,
            origin: None,
            availability: Availability::Ready,
        }
    }

    /// Whether it can be called now.
    pub fn is_ready(&self) -> bool {
        self.availability == Availability::Ready
    }

    /// The tool as the model is offered it.
    pub fn into_spec(self) -> ToolSpec {
        ToolSpec {
            name: self.name,
            description: self.description,
            parameters: self.parameters,
        }
    }

    /// The description shown to operators: an unavailable tool's says why.
    fn shown_description(&self) -> String {
        match &self.availability {
            Availability::Ready => self.description.clone(),
            Availability::Unavailable(why) => format!("(unavailable: {why}) {}", self.description),
        }
    }

    /// The tags operators see (`unavailable` for a tool that cannot be called now).
    fn tags(&self) -> Vec<&'static str> {
        let mut tags = vec![self.source.as_str()];
        if !self.is_ready() {
            tags.push("unavailable");
        }
        tags
    }

    /// The tool as a `tools.catalog` entry (upstream's `ToolCatalogEntry`: a tool that is
    /// not built in is a plugin's, its `pluginId` the source and origin).
    pub fn to_catalog(&self) -> Value {
        let mut v = json!({
            "id": self.name,
            "label": self.name,
            "description": self.shown_description(),
            "source": if self.source == ToolSource::Builtin { "core" } else { "plugin" },
            "defaultProfiles": ["full"],
            "tags": self.tags(),
        });
        if self.source != ToolSource::Builtin {
            v["pluginId"] = json!(self.plugin_id());
        }
        v
    }

    /// The tool as a `tools.effective` entry (`ToolsEffectiveEntry`).
    pub fn to_effective(&self) -> Value {
        let mut v = json!({
            "id": self.name,
            "label": self.name,
            "description": self.shown_description(),
            "rawDescription": self.description,
            "source": self.effective_source(),
            "tags": self.tags(),
        });
        match (self.source, &self.origin) {
            (ToolSource::Mcp, Some(server)) => {
                v["mcpServer"] = json!(server);
                let raw = self
                    .name
                    .strip_prefix(&format!("{server}__"))
                    .unwrap_or(&self.name);
                v["mcpToolName"] = json!(raw);
            }
            (ToolSource::Node | ToolSource::Skill, _) => v["pluginId"] = json!(self.plugin_id()),
            _ => {}
        }
        v
    }

    /// The `tools.effective` group source of this tool.
    pub fn effective_source(&self) -> &'static str {
        match self.source {
            ToolSource::Builtin => "core",
            ToolSource::Mcp => "mcp",
            ToolSource::Node | ToolSource::Skill => "plugin",
        }
    }

    /// The plugin id operators see for a tool that is not built in.
    fn plugin_id(&self) -> String {
        match &self.origin {
            Some(o) => format!("{}:{o}", self.source.as_str()),
            None => self.source.as_str().to_string(),
        }
    }
}

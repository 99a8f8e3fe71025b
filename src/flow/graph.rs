//! `recoverbot flows graph`: the flows as a Mermaid or Graphviz diagram.
//! Nodes are steps (grouped by flow); edges are labelled with the button,
//! outcome or branch that takes them.

use super::model::{FlowSet, Step, Target};
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

fn node_id(t: &Target) -> String {
    format!("{}__{}", t.flow, t.step)
}

fn edges(step: &Step) -> Vec<(String, &Target)> {
    let mut out = Vec::new();
    for b in &step.buttons {
        out.push((b.label.clone(), &b.goto));
    }
    if let Some(c) = &step.capture {
        for (value, t) in &c.branches {
            out.push((format!("= {value}"), t));
        }
        out.push(("gives up".into(), &c.on_fail));
    }
    if let Some(a) = &step.action {
        for (outcome, t) in &a.on {
            out.push((outcome.clone(), t));
        }
    }
    if let Some(n) = &step.next {
        out.push((String::new(), n));
    }
    if let Some(c) = &step.count {
        out.push((format!("more than {}", c.max), &c.exceeded));
    }
    out
}

fn label_of(step: &Step) -> String {
    let kind = if let Some(a) = &step.action {
        format!("⚙ {}", a.name)
    } else if let Some(c) = &step.capture {
        format!("✎ {} ({:?})", c.var, c.validator)
    } else if step.end {
        "■ end".into()
    } else {
        String::new()
    };
    if kind.is_empty() {
        step.id.clone()
    } else {
        format!("{}\\n{kind}", step.id)
    }
}

fn clean(s: &str) -> String {
    s.replace('"', "'")
        .replace(['[', ']', '{', '}', '|', '<', '>'], " ")
}

pub fn render(set: &FlowSet, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("flowchart TD\n");
            for flow in set.flows.values() {
                let _ = writeln!(out, "  subgraph {}[\"{}\"]", flow.id, clean(&flow.title));
                for step in flow.steps.values() {
                    let t = Target {
                        flow: flow.id.clone(),
                        step: step.id.clone(),
                    };
                    let _ = writeln!(
                        out,
                        "    {}[\"{}\"]",
                        node_id(&t),
                        clean(&label_of(step)).replace("\\n", "<br/>")
                    );
                }
                out.push_str("  end\n");
            }
            for flow in set.flows.values() {
                for step in flow.steps.values() {
                    let from = node_id(&Target {
                        flow: flow.id.clone(),
                        step: step.id.clone(),
                    });
                    for (label, to) in edges(step) {
                        if label.is_empty() {
                            let _ = writeln!(out, "  {from} --> {}", node_id(to));
                        } else {
                            let _ = writeln!(
                                out,
                                "  {from} -- \"{}\" --> {}",
                                clean(&label),
                                node_id(to)
                            );
                        }
                    }
                }
            }
        }
        GraphFormat::Dot => {
            out.push_str(
                "digraph flows {\n  rankdir=TB;\n  node [shape=box, fontname=\"sans-serif\"];\n",
            );
            for flow in set.flows.values() {
                let _ = writeln!(
                    out,
                    "  subgraph cluster_{} {{\n    label=\"{}\";",
                    flow.id,
                    clean(&flow.title)
                );
                for step in flow.steps.values() {
                    let t = Target {
                        flow: flow.id.clone(),
                        step: step.id.clone(),
                    };
                    let _ = writeln!(
                        out,
                        "    {} [label=\"{}\"];",
                        node_id(&t),
                        clean(&label_of(step))
                    );
                }
                out.push_str("  }\n");
            }
            for flow in set.flows.values() {
                for step in flow.steps.values() {
                    let from = node_id(&Target {
                        flow: flow.id.clone(),
                        step: step.id.clone(),
                    });
                    for (label, to) in edges(step) {
                        let _ = writeln!(
                            out,
                            "  {from} -> {} [label=\"{}\"];",
                            node_id(to),
                            clean(&label)
                        );
                    }
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

//! `{variable}` templates in flow messages. The checker has already made
//! sure every name is known; a value missing at run time renders empty.

use std::collections::BTreeMap;

pub fn render(
    template: &str,
    vars: &BTreeMap<String, String>,
    platform: &BTreeMap<String, String>,
) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if let (true, Some(end)) = (tail.starts_with('{'), tail.find('}')) {
            let name = &tail[1..end];
            if let Some(v) = vars.get(name).or_else(|| platform.get(name)) {
                out.push_str(v);
            }
            rest = &tail[end + 1..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_come_from_the_conversation_then_the_platform() {
        let vars = BTreeMap::from([("email_masked".to_string(), "j***@x.com".to_string())]);
        let platform = BTreeMap::from([("platform_name".to_string(), "Acme".to_string())]);
        assert_eq!(
            render(
                "{platform_name} mailed {email_masked} {{ok}} {missing}!",
                &vars,
                &platform
            ),
            "Acme mailed j***@x.com {ok} !"
        );
    }
}

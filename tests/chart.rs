//! The demo's outage chart (`demo --chart outage.svg`) is a well-formed
//! SVG document with one line per outcome and the breaker's state as a
//! band beneath. (`.ci/run` also checks the chart the real demo draws.)

use std::time::Duration;

#[path = "../examples/support/chart.rs"]
mod chart;

use chart::{outage_svg, Band, OutageData, Outcome};

/// Checks that `doc` is well-formed XML (balanced, properly nested tags,
/// quoted attributes, escaped text) and returns the elements' start tags.
fn well_formed(doc: &str) -> Result<Vec<String>, String> {
    let mut open: Vec<String> = Vec::new();
    let mut tags = Vec::new();
    let mut rest = doc;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        if text.contains('>') {
            return Err(format!("stray '>' in text {text:?}"));
        }
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| entity.starts_with(e))
            {
                return Err(format!("unescaped '&' in {text:?}"));
            }
        }
        let gt = rest[lt..]
            .find('>')
            .ok_or_else(|| "unterminated tag".to_string())?;
        let tag = &rest[lt + 1..lt + gt];
        rest = &rest[lt + gt + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match open.pop() {
                Some(top) if top == name.trim() => continue,
                top => return Err(format!("</{name}> closes {top:?}")),
            }
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name = body
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() || !body.matches('"').count().is_multiple_of(2) {
            return Err(format!("malformed tag <{tag}>"));
        }
        if tags.is_empty() && name != "svg" {
            return Err(format!("the root is <{name}>, not <svg>"));
        }
        if !tags.is_empty() && open.is_empty() {
            return Err(format!("<{name}> after the root closed"));
        }
        tags.push(body.to_string());
        if !self_closing {
            open.push(name);
        }
    }
    if !open.is_empty() {
        return Err(format!("left open: {open:?}"));
    }
    if !rest.trim().is_empty() {
        return Err(format!("text after the root: {rest:?}"));
    }
    Ok(tags)
}

fn sample() -> OutageData {
    let ms = Duration::from_millis;
    let mut data = OutageData {
        down: Some(ms(600)),
        states: vec![
            (ms(60), Band::Open),
            (ms(360), Band::HalfOpen),
            (ms(370), Band::Open),
            (ms(670), Band::HalfOpen),
            (ms(680), Band::Closed),
        ],
        ..OutageData::default()
    };
    for i in 0..40u64 {
        let at = ms(i * 20);
        let outcome = match at.as_millis() {
            0..60 => Outcome::Failed,
            680.. => Outcome::Ok,
            360..370 | 670..680 => Outcome::Failed,
            _ => Outcome::FailedFast,
        };
        data.requests.push((at, outcome));
    }
    data
}

#[test]
fn the_outage_chart_is_well_formed_svg_with_every_series_and_the_band() {
    let svg = outage_svg(&sample(), "an outage & its recovery <quick>");
    let tags = well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    assert!(tags[0].starts_with(r#"svg xmlns="http://www.w3.org/2000/svg""#));
    for id in ["series-ok", "series-failed", "series-failed-fast"] {
        let line = tags
            .iter()
            .find(|t| t.contains(&format!(r#"id="{id}""#)))
            .unwrap_or_else(|| panic!("no {id}"));
        assert!(line.starts_with("polyline"), "{line}");
        // 30 buckets, one point each.
        let points = line.split(r#"points=""#).nth(1).unwrap();
        let points = points.split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 30, "{id}");
    }
    let bands: Vec<&str> = tags
        .iter()
        .filter_map(|t| t.split(r#"class="band-"#).nth(1))
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert_eq!(
        bands,
        ["closed", "open", "half-open", "open", "half-open", "closed"],
        "the band follows the breaker from closed through the outage back to closed"
    );
    assert!(svg.contains("an outage &amp; its recovery &lt;quick&gt;"));
}

#[test]
fn the_checker_refuses_broken_documents() {
    assert!(well_formed("<svg><g></svg>").is_err());
    assert!(well_formed("<svg><text>a & b</text></svg>").is_err());
    assert!(well_formed(r#"<svg><rect x="1/></svg>"#).is_err());
    assert!(well_formed("<g></g>").is_err());
    assert!(well_formed("<svg></svg>").is_ok());
}

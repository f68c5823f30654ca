//! `poolguard lab --report FILE.html`: one self-contained page (inline CSS and SVG, no
//! external assets, no script) with every scenario's charts, tables and verdicts.
//!
//! The charts are drawn here: each series is one SVG `<path>` (class `series`, with a
//! `data-points` count) over axes with ticks in the axis's unit; latency distributions use a
//! logarithmic y axis; naive series are warm and dashed, poolguard's cool and solid.

use std::fmt::Write as _;

use super::report::{Axis, Chart, Report, Role, ScenarioReport, TableData, Unit};

const W: f64 = 760.0;
const H: f64 = 300.0;
/// Plot area margins: left, right, top, bottom.
const ML: f64 = 72.0;
const MR: f64 = 16.0;
const MT: f64 = 16.0;
const MB: f64 = 44.0;

const NAIVE: [&str; 3] = ["#d9480f", "#c2255c", "#e8590c"];
const POOLGUARD: [&str; 4] = ["#1864ab", "#2b8a3e", "#5f3dc4", "#0b7285"];

/// Text for HTML element content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A tick label in the axis's unit.
pub(crate) fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Seconds => {
            let a = v.abs();
            if a == 0.0 {
                "0".into()
            } else if a < 1e-6 {
                format!("{} ns", trim(v * 1e9))
            } else if a < 1e-3 {
                format!("{} µs", trim(v * 1e6))
            } else if a < 1.0 {
                format!("{} ms", trim(v * 1e3))
            } else {
                format!("{} s", trim(v))
            }
        }
        Unit::Bytes => {
            let a = v.abs();
            let k = 1024.0;
            if a >= k * k * k {
                format!("{} GiB", trim(v / (k * k * k)))
            } else if a >= k * k {
                format!("{} MiB", trim(v / (k * k)))
            } else if a >= k {
                format!("{} KiB", trim(v / k))
            } else {
                format!("{} B", trim(v))
            }
        }
        Unit::Count => {
            if v.abs() >= 1e6 {
                format!("{}M", trim(v / 1e6))
            } else if v.abs() >= 1e4 {
                format!("{}k", trim(v / 1e3))
            } else {
                trim(v)
            }
        }
        Unit::Percentile => format!("p{}", trim(v)),
    }
}

/// At most 3 significant decimals, no trailing zeros.
fn trim(v: f64) -> String {
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A linear or logarithmic mapping of a data range onto pixels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Scale {
    /// A scale over the finite `values` (positive ones for a log scale), mapped onto
    /// `from..to` pixels; `None` when there is no such value.
    pub(crate) fn fit(
        values: impl Iterator<Item = f64>,
        log: bool,
        zero: bool,
        from: f64,
        to: f64,
    ) -> Option<Self> {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi {
            return None;
        }
        if log {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil());
            if hi <= lo {
                hi = lo * 10.0;
            }
        } else {
            if zero {
                lo = lo.min(0.0);
                hi = hi.max(0.0);
            }
            if hi <= lo {
                hi = lo + 1.0;
            }
            let step = nice_step((hi - lo) / 5.0);
            lo = (lo / step).floor() * step;
            hi = (hi / step).ceil() * step;
        }
        Some(Self {
            lo,
            hi,
            log,
            from,
            to,
        })
    }

    /// The pixel of `v` (clamped into the range).
    pub(crate) fn at(&self, v: f64) -> f64 {
        let f = if self.log {
            let v = v.max(self.lo);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.from + f.clamp(0.0, 1.0) * (self.to - self.from)
    }

    /// Tick values: each power of ten on a log scale, 4-8 round numbers on a linear one.
    pub(crate) fn ticks(&self) -> Vec<f64> {
        let mut t = Vec::new();
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            t.extend((a..=b).map(|k| format!("1e{k}").parse().unwrap_or(f64::NAN)));
        } else {
            let step = nice_step((self.hi - self.lo) / 5.0);
            let n = ((self.hi - self.lo) / step).round() as i64;
            t.extend((0..=n).map(|i| {
                let v = self.lo + i as f64 * step;
                if v.abs() < step * 1e-9 {
                    0.0
                } else {
                    v
                }
            }));
        }
        t
    }
}

/// 1, 2 or 5 times a power of ten, near `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let f = raw / p;
    let n = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * p
}

fn colour(role: Role, i: usize) -> &'static str {
    match role {
        Role::Naive => NAIVE[i % NAIVE.len()],
        Role::Poolguard => POOLGUARD[i % POOLGUARD.len()],
    }
}

fn axis_label(a: &Axis) -> String {
    if a.log {
        format!("{} (log scale)", a.label)
    } else {
        a.label.clone()
    }
}

/// One chart as an inline SVG with its legend.
pub(crate) fn svg(c: &Chart) -> String {
    let pts = || c.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1, y0, y1) = (ML, W - MR, H - MB, MT);
    let xs = Scale::fit(
        pts().map(|p| p[0]).chain(c.marks.iter().map(|m| m.x)),
        c.x.log,
        false,
        x0,
        x1,
    );
    let ys = Scale::fit(pts().map(|p| p[1]), c.y.log, true, y0, y1);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(&c.title)
    );
    let (Some(xs), Some(ys)) = (xs, ys) else {
        let _ = write!(
            o,
            r#"<text class="empty" x="{}" y="{}" text-anchor="middle">no data recorded</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return o;
    };
    // Grid and ticks.
    for t in ys.ticks() {
        let y = ys.at(t);
        let _ = write!(
            o,
            r##"<line class="grid" x1="{x0}" x2="{x1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            esc(&fmt_value(t, c.y.unit))
        );
    }
    for t in xs.ticks() {
        let x = xs.at(t);
        let _ = write!(
            o,
            r##"<line class="tickmark" x1="{x:.1}" x2="{x:.1}" y1="{y0}" y2="{:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y0 + 5.0,
            y0 + 18.0,
            esc(&fmt_value(t, c.x.unit))
        );
    }
    let _ = write!(
        o,
        r#"<line class="axis" x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}"/><line class="axis" x1="{x0}" x2="{x0}" y1="{y0}" y2="{y1}"/>"#
    );
    let _ = write!(
        o,
        r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        H - 8.0,
        esc(&axis_label(&c.x))
    );
    let _ = write!(
        o,
        r#"<text class="label" transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (y0 + y1) / 2.0,
        esc(&axis_label(&c.y))
    );
    for m in &c.marks {
        let x = xs.at(m.x);
        let _ = write!(
            o,
            r#"<line class="mark" x1="{x:.1}" x2="{x:.1}" y1="{y0}" y2="{y1}"/><text class="marklabel" x="{:.1}" y="{:.1}">{}</text>"#,
            x + 3.0,
            y1 + 10.0,
            esc(&m.label)
        );
    }
    // The series.
    let (mut n_naive, mut n_pg) = (0, 0);
    for s in &c.series {
        let i = match s.role {
            Role::Naive => {
                n_naive += 1;
                n_naive - 1
            }
            Role::Poolguard => {
                n_pg += 1;
                n_pg - 1
            }
        };
        let col = colour(s.role, i);
        let mut d = String::new();
        let mut drawn = 0;
        for p in s
            .points
            .iter()
            .filter(|p| p[0].is_finite() && p[1].is_finite())
        {
            let _ = write!(
                d,
                "{}{:.1} {:.1}",
                if drawn == 0 { "M" } else { " L" },
                xs.at(p[0]),
                ys.at(p[1])
            );
            drawn += 1;
        }
        let dash = if s.role == Role::Naive {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let _ = write!(
            o,
            r#"<path class="series {}" data-series="{}" data-points="{drawn}" d="{d}" stroke="{col}"{dash} fill="none"/>"#,
            role_name(s.role),
            esc(&s.name)
        );
        if drawn <= 40 {
            for p in &s.points {
                let _ = write!(
                    o,
                    r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="2.5" fill="{col}"><title>{}: {}, {}</title></circle>"#,
                    xs.at(p[0]),
                    ys.at(p[1]),
                    esc(&s.name),
                    esc(&fmt_value(p[0], c.x.unit)),
                    esc(&fmt_value(p[1], c.y.unit))
                );
            }
        }
    }
    o.push_str("</svg>");
    // Legend.
    o.push_str(r#"<ul class="legend">"#);
    let (mut n_naive, mut n_pg) = (0, 0);
    for s in &c.series {
        let i = match s.role {
            Role::Naive => {
                n_naive += 1;
                n_naive - 1
            }
            Role::Poolguard => {
                n_pg += 1;
                n_pg - 1
            }
        };
        let _ = write!(
            o,
            r#"<li class="{}"><span class="swatch" style="background:{}"></span>{} <em>({})</em></li>"#,
            role_name(s.role),
            colour(s.role, i),
            esc(&s.name),
            role_name(s.role)
        );
    }
    o.push_str("</ul>");
    o
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Naive => "naive",
        Role::Poolguard => "poolguard",
    }
}

fn table(t: &TableData) -> String {
    let mut o = String::from(r#"<div class="table"><table><thead><tr>"#);
    for h in &t.header {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        o.push_str("<tr>");
        for c in r {
            let _ = write!(o, "<td>{}</td>", esc(c));
        }
        o.push_str("</tr>");
    }
    let _ = write!(
        o,
        r#"</tbody></table></div><p class="verdict"><strong>Verdict:</strong> {}</p>"#,
        esc(&t.verdict)
    );
    o
}

fn section_title(section: &Option<String>) -> String {
    section
        .as_ref()
        .map(|s| format!(" <span class=\"section\">({})</span>", esc(s)))
        .unwrap_or_default()
}

fn scenario(s: &ScenarioReport) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<section class="scenario" id="{0}" data-scenario="{0}"><h2>{0}</h2><p class="about">{1}</p><p class="status {2}">{3}</p>"#,
        esc(&s.name),
        esc(&s.about),
        if s.ok { "ok" } else { "failed" },
        esc(&match &s.error {
            None => format!("done in {:.1} s", s.seconds),
            Some(e) => format!("FAILED after {:.1} s: {e}", s.seconds),
        })
    );
    for t in &s.tables {
        o.push_str(&section_title(&t.section));
        o.push_str(&table(t));
    }
    if !s.charts.is_empty() {
        o.push_str(r#"<div class="charts">"#);
        for c in &s.charts {
            let _ = write!(
                o,
                r#"<figure class="chart"><figcaption>{}{}</figcaption>{}</figure>"#,
                esc(&c.title),
                section_title(&c.section),
                svg(c)
            );
        }
        o.push_str("</div>");
    }
    if !s.notes.is_empty() {
        let _ = write!(
            o,
            r#"<details class="notes"><summary>output</summary><pre>{}</pre></details>"#,
            esc(&s.notes.join("\n"))
        );
    }
    o.push_str("</section>");
    o
}

const CSS: &str = "
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#212529;background:#f8f9fa}
header,main{max-width:1100px;margin:0 auto;padding:0 20px}
header{padding-top:18px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:0 0 4px}
nav a{margin-right:12px}
.scenario{background:#fff;border:1px solid #dee2e6;border-radius:6px;padding:16px;margin:16px 0}
.about{color:#495057;margin:0 0 6px}
.status.ok{color:#2b8a3e}.status.failed{color:#c92a2a;font-weight:bold}
.table{overflow-x:auto}
table{border-collapse:collapse;margin:10px 0 4px;font-size:13px}
th,td{border:1px solid #dee2e6;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f3f5}
.verdict{background:#e7f5ff;border-left:4px solid #1864ab;padding:6px 10px;margin:4px 0 14px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #e9ecef;border-radius:4px;padding:8px;background:#fff}
figcaption{font-weight:600;margin-bottom:4px}
svg.chart{max-width:100%;height:auto;display:block}
svg .grid{stroke:#e9ecef}svg .axis,svg .tickmark{stroke:#495057}
svg .tick{font-size:11px;fill:#495057}svg .label{font-size:12px;fill:#212529}
svg .mark{stroke:#868e96;stroke-dasharray:3 3}svg .marklabel{font-size:11px;fill:#868e96}
svg .series{stroke-width:2}svg .empty{fill:#c92a2a}
.legend{list-style:none;padding:0;margin:4px 0 0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px}
.swatch{display:inline-block;width:14px;height:4px;margin-right:5px;vertical-align:middle}
.legend em{color:#868e96}
.section{color:#868e96;font-weight:normal}
pre{white-space:pre-wrap;font-size:12px}
";

/// The whole report page.
pub(crate) fn render(r: &Report) -> String {
    let mut o = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#);
    let _ = write!(
        o,
        "<title>poolguard lab report</title><style>{CSS}</style></head><body><header><h1>poolguard lab report</h1><p>poolguard {}, report schema {}{}. Each scenario reproduces one pool failure, with a naive baseline and with poolguard; the verdicts are computed from the figures.</p><nav>",
        esc(r.poolguard_version),
        r.schema_version,
        if r.quick { ", quick run (shortened phases)" } else { "" }
    );
    for s in &r.scenarios {
        let _ = write!(o, "<a href=\"#{0}\">{0}</a>", esc(&s.name));
    }
    o.push_str("</nav></header><main>");
    for s in &r.scenarios {
        o.push_str(&scenario(s));
    }
    o.push_str("</main></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::report::{Series, SCHEMA_VERSION};

    fn chart(points: Vec<[f64; 2]>, log: bool) -> Chart {
        let y = Axis::new("latency", Unit::Seconds);
        Chart::new(
            "t <1>",
            Axis::new("time", Unit::Seconds),
            if log { y.log() } else { y },
        )
        .series(Series::new("naive & co", Role::Naive, points.clone()))
        .series(Series::new("poolguard", Role::Poolguard, points))
        .mark(1.0, "outage")
    }

    /// The path's coordinates, as drawn.
    fn coords(svg: &str, series: &str) -> Vec<(f64, f64)> {
        let at = svg
            .find(&format!("data-series=\"{series}\""))
            .expect("series");
        let d = &svg[at..];
        let d = &d[d.find(" d=\"").unwrap() + 4..];
        let d = &d[..d.find('"').unwrap()];
        d.split(['M', 'L'])
            .filter(|s| !s.trim().is_empty())
            .map(|p| {
                let mut it = p.split_whitespace().map(|v| v.parse::<f64>().unwrap());
                (it.next().unwrap(), it.next().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_series_is_drawn_left_to_right_inside_the_plot_with_every_point() {
        let svg = svg(&chart(vec![[0.0, 0.0], [1.0, 5.0], [2.0, 10.0]], false));
        let c = coords(&svg, "poolguard");
        assert_eq!(c.len(), 3);
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0), "{c:?}");
        // Bigger values are higher up (smaller y); everything inside the plot area.
        assert!(c[0].1 > c[1].1 && c[1].1 > c[2].1, "{c:?}");
        for (x, y) in &c {
            assert!(
                (ML..=W - MR).contains(x) && (MT..=H - MB).contains(y),
                "{c:?}"
            );
        }
        assert_eq!(c[0], (ML, H - MB));
        assert!(svg.contains(r#"data-points="3""#));
        // The legend names both sides; text is escaped; the mark is drawn.
        assert!(svg.contains("naive &amp; co <em>(naive)</em>"), "{svg}");
        assert!(svg.contains("<em>(poolguard)</em>"));
        assert!(svg.contains("aria-label=\"t &lt;1&gt;\""));
        assert!(svg.contains(">outage</text>"));
        assert!(svg.contains("stroke-dasharray=\"6 3\""), "naive is dashed");
    }

    #[test]
    fn an_empty_chart_says_so_instead_of_drawing() {
        let svg = svg(&chart(Vec::new(), false));
        assert!(svg.contains("no data recorded"));
        assert!(!svg.contains("<path"));
    }

    #[test]
    fn a_log_axis_puts_each_power_of_ten_at_an_equal_step() {
        let s = Scale::fit([2e-6, 0.5].into_iter(), true, true, 0.0, 100.0).unwrap();
        assert_eq!(s.ticks(), [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]);
        let step = s.at(1e-5) - s.at(1e-6);
        assert!((s.at(1e-3) - s.at(1e-4) - step).abs() < 1e-9);
        // Zero and negative values (none on a log axis) sit at the bottom.
        assert_eq!(s.at(0.0), 0.0);
    }

    #[test]
    fn a_linear_axis_gets_round_ticks_that_cover_the_data_from_zero() {
        let s = Scale::fit([3.0, 47.0].into_iter(), false, true, 0.0, 100.0).unwrap();
        let t = s.ticks();
        assert_eq!(t.first(), Some(&0.0));
        assert_eq!(t.last(), Some(&50.0));
        assert!(t.len() >= 4 && t.len() <= 8, "{t:?}");
        assert!(Scale::fit([f64::NAN].into_iter(), false, true, 0.0, 1.0).is_none());
        // A flat series still gets a range.
        let flat = Scale::fit([4.0, 4.0].into_iter(), false, false, 0.0, 1.0).unwrap();
        assert!(flat.ticks().len() >= 2);
    }

    #[test]
    fn tick_labels_read_in_the_axis_unit() {
        assert_eq!(fmt_value(0.000_111, Unit::Seconds), "111 µs");
        assert_eq!(fmt_value(2.0, Unit::Seconds), "2 s");
        assert_eq!(fmt_value(1.1e-7, Unit::Seconds), "110 ns");
        assert_eq!(fmt_value(0.25, Unit::Seconds), "250 ms");
        assert_eq!(fmt_value(64.0 * 1024.0 * 1024.0, Unit::Bytes), "64 MiB");
        assert_eq!(fmt_value(1536.0, Unit::Bytes), "1.5 KiB");
        assert_eq!(fmt_value(30000.0, Unit::Count), "30k");
        assert_eq!(fmt_value(99.9, Unit::Percentile), "p99.9");
    }

    #[test]
    fn the_page_is_self_contained_and_escapes_what_it_shows() {
        let r = Report {
            schema_version: SCHEMA_VERSION,
            poolguard_version: "0.1.0",
            quick: true,
            scenarios: vec![ScenarioReport {
                name: "db-outage".into(),
                about: "a <b>".into(),
                ok: true,
                tables: vec![TableData {
                    section: None,
                    header: vec!["pool".into()],
                    rows: vec![vec!["<script>".into()]],
                    verdict: "breaker: 3 < 4".into(),
                }],
                charts: vec![chart(vec![[0.0, 1.0], [1.0, 2.0]], true)],
                ..ScenarioReport::default()
            }],
        };
        let page = render(&r);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(!page.contains("<script"), "no script, and none injected");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("breaker: 3 &lt; 4"));
        for external in ["src=", "href=\"http", "@import", "url("] {
            assert!(!page.contains(external), "external asset: {external}");
        }
        assert_eq!(page.matches("<svg").count(), 1);
        assert!(page.contains("id=\"db-outage\""));
    }
}

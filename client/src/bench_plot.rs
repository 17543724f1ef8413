//! `spentledger bench-plot`: PNG charts drawn from `spentledger bench --csv`
//! files (and the memory series of a `--json` report).
//!
//! Charts are drawn into an RGB buffer and encoded with `png`, with text
//! rendered from an embedded font: nothing is needed from the machine
//! (no fontconfig, no freetype), so CI and a bare server draw the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use crate::bench::BenchReport;

/// Chart size in pixels.
const WIDTH_PX: u32 = 960;
const HEIGHT_PX: u32 = 600;
/// The family name charts ask for; registered once from the embedded font.
const FONT: &str = "sans-serif";
/// A CSV holds a few hundred runs at most; more is not a bench file.
pub const CSV_ROWS_MAX: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Csv {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("nothing to plot: {0}")]
    Empty(String),
    #[error("drawing {chart}: {reason}")]
    Draw { chart: String, reason: String },
    #[error("writing {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// The columns of one `bench --csv` row that the charts use.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    pub label: String,
    pub mode: String,
    pub nodes: usize,
    pub nodes_running: usize,
    pub double_spend_share: f64,
    pub gateways: usize,
    pub batch: usize,
    pub throughput_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub crypto_limit_per_s: f64,
}

impl BenchRow {
    /// The 3-node, all-running, no-double-spend, closed-loop runs: the
    /// batch × gateways matrix the charts compare.
    fn in_matrix(&self) -> bool {
        self.mode == "Closed"
            && self.nodes == 3
            && self.nodes_running == 3
            && self.double_spend_share == 0.0
    }
}

/// Reads a CSV written by `spentledger bench --csv` (its header must be
/// [`BenchReport::CSV_HEADER`]).
pub fn read_csv(path: &Path) -> Result<Vec<BenchRow>, PlotError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlotError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bad = |line: usize, reason: String| PlotError::Csv {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    if header.join(",") != BenchReport::CSV_HEADER {
        return Err(bad(
            1,
            "not a `spentledger bench --csv` file of this version (header differs)".into(),
        ));
    }
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .expect("the column is in CSV_HEADER, checked above")
    };
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line_no = i + 2;
        if rows.len() == CSV_ROWS_MAX {
            return Err(bad(line_no, format!("more than {CSV_ROWS_MAX} rows")));
        }
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != header.len() {
            return Err(bad(
                line_no,
                format!("{} cells, the header has {}", cells.len(), header.len()),
            ));
        }
        let text = |name: &str| cells[column(name)].to_owned();
        let number = |name: &str| -> Result<f64, PlotError> {
            cells[column(name)]
                .parse::<f64>()
                .map_err(|e| bad(line_no, format!("{name}: {e}")))
        };
        let count = |name: &str| -> Result<usize, PlotError> {
            cells[column(name)]
                .parse::<usize>()
                .map_err(|e| bad(line_no, format!("{name}: {e}")))
        };
        rows.push(BenchRow {
            label: text("label"),
            mode: text("mode"),
            nodes: count("nodes")?,
            nodes_running: count("nodes_running")?,
            double_spend_share: number("double_spend_share")?,
            gateways: count("gateways")?,
            batch: count("batch")?,
            throughput_per_s: number("throughput_per_s")?,
            p50_ms: number("p50_ms")?,
            p99_ms: number("p99_ms")?,
            crypto_limit_per_s: number("crypto_limit_per_s")?,
        });
    }
    Ok(rows)
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are DejaVu Sans, a valid TrueType font.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

fn draw_err(chart: &str) -> impl Fn(String) -> PlotError + '_ {
    move |reason| PlotError::Draw {
        chart: chart.to_owned(),
        reason,
    }
}

/// Draws into a fresh white RGB buffer with `paint`, then writes a PNG.
fn render<F>(path: &Path, chart: &str, paint: F) -> Result<(), PlotError>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
{
    register_font();
    let mut rgb = vec![255u8; (WIDTH_PX * HEIGHT_PX * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .map_err(draw_err(chart))?;
        paint(&root).map_err(draw_err(chart))?;
        root.present()
            .map_err(|e| e.to_string())
            .map_err(draw_err(chart))?;
    }
    let write_err = |reason: String| PlotError::Write {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::create(path).map_err(|e| write_err(e.to_string()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH_PX, HEIGHT_PX);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| write_err(e.to_string()))?;
    writer
        .write_image_data(&rgb)
        .map_err(|e| write_err(e.to_string()))?;
    writer.finish().map_err(|e| write_err(e.to_string()))
}

/// Mean of the matrix rows per (series key, x), in key and x order.
fn series_by<K: Ord + Copy, X: Ord + Copy>(
    rows: &[BenchRow],
    key: impl Fn(&BenchRow) -> K,
    x: impl Fn(&BenchRow) -> X,
    y: impl Fn(&BenchRow) -> f64,
) -> BTreeMap<K, Vec<(X, f64)>> {
    let mut sums: BTreeMap<(K, X), (f64, usize)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.in_matrix()) {
        let e = sums.entry((key(r), x(r))).or_default();
        e.0 += y(r);
        e.1 += 1;
    }
    let mut out: BTreeMap<K, Vec<(X, f64)>> = BTreeMap::new();
    for ((k, xv), (sum, n)) in sums {
        out.entry(k).or_default().push((xv, sum / n as f64));
    }
    out
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Axis labels: whole numbers, one decimal below 10.
fn axis_number(v: f64) -> String {
    if v.abs() < 10.0 && v.fract().abs() > f64::EPSILON {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Log-scale axis range around `lo..hi`, a little wider on each side.
fn log_range(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let lo = (lo.max(1e-3)) / 1.5;
    let hi = (hi.max(lo * 2.0)) * 1.5;
    lo..hi
}

/// One series of a chart.
struct Line {
    points: Vec<(f64, f64)>,
    colour: RGBAColor,
    dashed: bool,
    marker: Marker,
    /// In the legend when set.
    label: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Circle,
    Triangle,
}

/// What differs between the charts besides their series.
struct Frame<'a> {
    caption: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    legend: SeriesLabelPosition,
    /// Fine grid lines (off on log axes, where they crowd).
    light_grid: bool,
}

/// Draws `lines` on axes `x` × `y` with the shared look of every chart.
fn draw<X, Y>(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    frame: &Frame<'_>,
    x: X,
    y: Y,
    lines: Vec<Line>,
) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(frame.caption, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(frame.x_desc)
        .y_desc(frame.y_desc)
        .x_label_formatter(&|v| axis_number(*v))
        .y_label_formatter(&|v| axis_number(*v))
        .label_style((FONT, 14));
    if !frame.light_grid {
        mesh.light_line_style(WHITE);
    }
    mesh.draw().map_err(|e| e.to_string())?;
    for line in lines {
        let colour = line.colour;
        let style = colour.stroke_width(2);
        let drawn = if line.dashed {
            chart.draw_series(DashedLineSeries::new(line.points.clone(), 8, 5, style))
        } else {
            chart.draw_series(LineSeries::new(line.points.clone(), style))
        }
        .map_err(|e| e.to_string())?;
        if let Some(label) = line.label {
            drawn.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
            });
        }
        match line.marker {
            Marker::None => {}
            Marker::Circle => {
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .map(|p| Circle::new(*p, 4, colour.filled())),
                    )
                    .map_err(|e| e.to_string())?;
            }
            Marker::Triangle => {
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .map(|p| TriangleMarker::new(*p, 5, colour.filled())),
                    )
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(frame.legend.clone())
        .draw()
        .map_err(|e| e.to_string())
}

fn as_points<X: Copy + Into<f64>>(points: &[(X, f64)]) -> Vec<(f64, f64)> {
    points.iter().map(|(x, y)| ((*x).into(), *y)).collect()
}

/// `latency-vs-batch.png`: p50 (solid) and p99 (dashed) submit-to-verdict
/// latency against the batch size, one colour per gateway count.
pub fn latency_vs_batch(rows: &[BenchRow], path: &Path) -> Result<(), PlotError> {
    let p50 = series_by(rows, |r| r.gateways, |r| r.batch as u32, |r| r.p50_ms);
    let p99 = series_by(rows, |r| r.gateways, |r| r.batch as u32, |r| r.p99_ms);
    let (x_lo, x_hi) =
        bounds(p50.values().flatten().map(|(b, _)| f64::from(*b))).ok_or_else(|| {
            PlotError::Empty("no 3-node closed-loop runs without double spends".into())
        })?;
    let (y_lo, y_hi) = bounds(p50.values().chain(p99.values()).flatten().map(|(_, y)| *y))
        .ok_or_else(|| PlotError::Empty("no latency figures".into()))?;
    let mut lines = Vec::new();
    for (i, (gateways, points)) in p50.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        lines.push(Line {
            points: as_points(points),
            colour,
            dashed: false,
            marker: Marker::Circle,
            label: Some(if *gateways == 1 {
                "1 gateway".to_owned()
            } else {
                format!("{gateways} gateways")
            }),
        });
        if let Some(tail) = p99.get(gateways) {
            lines.push(Line {
                points: as_points(tail),
                colour,
                dashed: true,
                marker: Marker::Triangle,
                label: None,
            });
        }
    }
    let frame = Frame {
        caption: "Submit-to-verdict latency vs batch size (3 nodes, closed loop)",
        x_desc: "payments per batch",
        y_desc: "latency (ms), p50 solid, p99 dashed",
        legend: SeriesLabelPosition::UpperLeft,
        light_grid: false,
    };
    render(path, "latency vs batch size", |root| {
        draw(
            root,
            &frame,
            log_range(x_lo, x_hi).log_scale(),
            log_range(y_lo, y_hi).log_scale(),
            lines,
        )
    })
}

/// `throughput-vs-gateways.png`: payments/s against the gateway count, one
/// colour per batch size, with half of the mean crypto limit (the target).
pub fn throughput_vs_gateways(rows: &[BenchRow], path: &Path) -> Result<(), PlotError> {
    let series = series_by(
        rows,
        |r| r.batch,
        |r| r.gateways as u32,
        |r| r.throughput_per_s,
    );
    let (x_lo, x_hi) =
        bounds(series.values().flatten().map(|(g, _)| f64::from(*g))).ok_or_else(|| {
            PlotError::Empty("no 3-node closed-loop runs without double spends".into())
        })?;
    let matrix: Vec<&BenchRow> = rows.iter().filter(|r| r.in_matrix()).collect();
    let half_limit =
        matrix.iter().map(|r| r.crypto_limit_per_s).sum::<f64>() / matrix.len().max(1) as f64 / 2.0;
    let (_, y_hi) = bounds(
        series
            .values()
            .flatten()
            .map(|(_, y)| *y)
            .chain([half_limit]),
    )
    .ok_or_else(|| PlotError::Empty("no throughput figures".into()))?;
    let mut lines: Vec<Line> = series
        .iter()
        .enumerate()
        .map(|(i, (batch, points))| Line {
            points: as_points(points),
            colour: Palette99::pick(i).to_rgba(),
            dashed: false,
            marker: Marker::Circle,
            label: Some(format!("batches of {batch}")),
        })
        .collect();
    let edge = log_range(x_lo, x_hi);
    lines.push(Line {
        points: vec![(edge.start, half_limit), (edge.end, half_limit)],
        colour: BLACK.to_rgba(),
        dashed: true,
        marker: Marker::None,
        label: Some(format!("50% of the crypto limit ({half_limit:.0}/s)")),
    });
    let frame = Frame {
        caption: "Throughput vs concurrent gateways (3 nodes, closed loop)",
        x_desc: "concurrent gateways",
        y_desc: "payments per second",
        legend: SeriesLabelPosition::UpperLeft,
        light_grid: false,
    };
    render(path, "throughput vs gateways", |root| {
        draw(root, &frame, edge.log_scale(), 0f64..y_hi * 1.15, lines)
    })
}

/// One node's resident set over a run: (seconds since the load began, MiB).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryLine {
    pub node: u64,
    pub samples: Vec<(f64, f64)>,
}

/// Reads `node_rss_series_mib` from a `spentledger --json bench` report.
pub fn read_memory_json(path: &Path) -> Result<Vec<MemoryLine>, PlotError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlotError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| PlotError::Csv {
        path: path.to_owned(),
        line: 1,
        reason,
    };
    let report: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let series = report["node_rss_series_mib"].as_array().ok_or_else(|| {
        bad("no node_rss_series_mib (a `--json bench` report of a local cluster)".into())
    })?;
    series
        .iter()
        .map(|s| {
            let node = s["node"]
                .as_u64()
                .ok_or_else(|| bad("a series without node".into()))?;
            let samples = s["samples"]
                .as_array()
                .ok_or_else(|| bad(format!("node {node}: no samples")))?
                .iter()
                .map(|p| match (p[0].as_f64(), p[1].as_f64()) {
                    (Some(t), Some(mib)) => Ok((t, mib)),
                    _ => Err(bad(format!("node {node}: a sample is not [s, MiB]"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(MemoryLine { node, samples })
        })
        .collect()
}

/// `memory-over-time.png`: each node's resident set during the load.
pub fn memory_over_time(lines: &[MemoryLine], path: &Path) -> Result<(), PlotError> {
    let (_, t_hi) = bounds(lines.iter().flat_map(|l| l.samples.iter().map(|(t, _)| *t)))
        .ok_or_else(|| PlotError::Empty("no memory samples".into()))?;
    let (_, mib_hi) = bounds(lines.iter().flat_map(|l| l.samples.iter().map(|(_, m)| *m)))
        .ok_or_else(|| PlotError::Empty("no memory samples".into()))?;
    let series = lines
        .iter()
        .enumerate()
        .map(|(i, l)| Line {
            points: l.samples.clone(),
            colour: Palette99::pick(i).to_rgba(),
            dashed: false,
            marker: Marker::None,
            label: Some(format!("node {}", l.node)),
        })
        .collect();
    let frame = Frame {
        caption: "Node resident memory during the load",
        x_desc: "seconds since the load began",
        y_desc: "resident set (MiB)",
        legend: SeriesLabelPosition::LowerRight,
        light_grid: true,
    };
    render(path, "memory over time", |root| {
        draw(
            root,
            &frame,
            0f64..t_hi.max(1.0),
            0f64..mib_hi * 1.15,
            series,
        )
    })
}

/// The file names `bench-plot` writes into its output directory.
pub const LATENCY_PNG: &str = "latency-vs-batch.png";
pub const THROUGHPUT_PNG: &str = "throughput-vs-gateways.png";
pub const MEMORY_PNG: &str = "memory-over-time.png";

/// Draws both matrix charts from `csv` into `out_dir`; returns their paths.
pub fn plot_csv(csv: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let rows = read_csv(csv)?;
    std::fs::create_dir_all(out_dir).map_err(|e| PlotError::Write {
        path: out_dir.to_owned(),
        reason: e.to_string(),
    })?;
    let latency = out_dir.join(LATENCY_PNG);
    latency_vs_batch(&rows, &latency)?;
    let throughput = out_dir.join(THROUGHPUT_PNG);
    throughput_vs_gateways(&rows, &throughput)?;
    Ok(vec![latency, throughput])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(batch: usize, gateways: usize, throughput: f64, p50: f64) -> BenchRow {
        BenchRow {
            label: format!("b{batch}-g{gateways}"),
            mode: "Closed".into(),
            nodes: 3,
            nodes_running: 3,
            double_spend_share: 0.0,
            gateways,
            batch,
            throughput_per_s: throughput,
            p50_ms: p50,
            p99_ms: p50 * 2.0,
            crypto_limit_per_s: 30_000.0,
        }
    }

    #[test]
    fn repeated_runs_are_averaged_and_runs_outside_the_matrix_left_out() {
        let mut single_node = row(100, 4, 99_999.0, 1.0);
        single_node.nodes = 1;
        single_node.nodes_running = 1;
        let rows = vec![
            row(100, 4, 1_000.0, 10.0),
            row(100, 4, 3_000.0, 30.0),
            row(10, 4, 500.0, 5.0),
            single_node,
        ];
        let series = series_by(&rows, |r| r.gateways, |r| r.batch, |r| r.throughput_per_s);
        assert_eq!(series.len(), 1);
        assert_eq!(series[&4], vec![(10, 500.0), (100, 2_000.0)]);
    }

    #[test]
    fn charts_are_png_files_and_an_empty_matrix_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rows = vec![
            row(10, 1, 800.0, 4.0),
            row(100, 1, 3_000.0, 20.0),
            row(100, 4, 7_000.0, 50.0),
        ];
        for (draw, name) in [
            (
                latency_vs_batch as fn(&[BenchRow], &Path) -> Result<(), PlotError>,
                LATENCY_PNG,
            ),
            (throughput_vs_gateways, THROUGHPUT_PNG),
        ] {
            let path = dir.path().join(name);
            draw(&rows, &path).expect("draw");
            let bytes = std::fs::read(&path).expect("png written");
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
            let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            let reader = decoder.read_info().expect("a readable PNG");
            assert_eq!(
                (reader.info().width, reader.info().height),
                (WIDTH_PX, HEIGHT_PX)
            );
        }
        let mut outside = row(100, 4, 1.0, 1.0);
        outside.double_spend_share = 0.1;
        let err =
            latency_vs_batch(&[outside], &dir.path().join("x.png")).expect_err("nothing to plot");
        assert!(matches!(err, PlotError::Empty(_)), "{err}");
    }

    #[test]
    fn a_csv_with_another_header_or_a_short_row_is_refused_with_its_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("b.csv");
        std::fs::write(&path, "mode,gateways\nClosed,4\n").expect("write");
        assert!(matches!(
            read_csv(&path),
            Err(PlotError::Csv { line: 1, .. })
        ));
        std::fs::write(&path, format!("{}\nx,Closed,3\n", BenchReport::CSV_HEADER)).expect("write");
        match read_csv(&path) {
            Err(PlotError::Csv {
                line: 2, reason, ..
            }) => assert!(reason.contains("cells"), "{reason}"),
            other => panic!("expected a line-2 error, got {other:?}"),
        }
    }
}

//! Panels of lines stacked in one SVG (plotters with its SVG backend only): the run's latency
//! percentiles, deliveries and reports per second over its seconds, or the ramp's costs and
//! latency against its offered rate.

use std::path::Path;

use plotters::prelude::*;

/// One named line of a panel: (x, value) points.
pub type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// One panel: title, y-axis label and its lines.
pub type Panel<'a> = (&'a str, &'a str, Vec<Series<'a>>);

/// Draws `panels` one above the other into an SVG at `path`, over the seconds of a run.
pub fn draw(path: &Path, title: &str, panels: &[Panel<'_>]) -> anyhow::Result<()> {
    draw_over(path, title, "seconds into the run", panels)
}

/// Draws `panels` one above the other into an SVG at `path`, their x axis named `x_desc`.
pub fn draw_over(
    path: &Path,
    title: &str,
    x_desc: &str,
    panels: &[Panel<'_>],
) -> anyhow::Result<()> {
    let height = 260 * u32::try_from(panels.len().max(1)).unwrap_or(1) + 40;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for ((name, unit, lines), area) in panels.iter().zip(areas.iter()) {
        let x_max = lines
            .iter()
            .flat_map(|(_, _, pts)| pts.iter().map(|p| p.0))
            .fold(1.0_f64, f64::max);
        let y_max = lines
            .iter()
            .flat_map(|(_, _, pts)| pts.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max)
            .max(1e-3)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(*name, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(*unit).draw()?;
        for (label, color, pts) in lines {
            let color = *color;
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                .label(*label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_svg_with_every_line_is_written() {
        let dir = std::env::temp_dir().join(format!("loadgen-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("p.svg");
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), f64::from(i * i))).collect();
        draw(
            &path,
            "test",
            &[
                ("latency", "ms", vec![("p99", RED, pts.clone())]),
                (
                    "throughput",
                    "per s",
                    vec![("reports", BLUE, pts), ("none", GREEN, vec![])],
                ),
            ],
        )
        .expect("draws");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(svg.starts_with("<svg") && svg.contains("p99") && svg.contains("reports"));
        std::fs::remove_dir_all(&dir).ok();
    }
}

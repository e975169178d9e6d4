//! Column alignment with the semantics of Go's `text/tabwriter`, as Docker
//! configures it for tables: `tabwriter.NewWriter(out, minwidth, 1, padding, ' ', 0)`.
//!
//! Text is split into lines and tab-terminated cells. The text after a
//! line's last tab is not part of any column and is never padded. A column
//! is laid out per *block*: a run of consecutive lines that all have a cell
//! in that column. Each block's width is the widest cell plus `padding`, but
//! at least `minwidth`. Blocks of later columns nest inside blocks of earlier
//! ones, which is why the layout is computed recursively, column by column.

/// Cell widths count characters, as Go counts runes (not display columns).
fn width(cell: &str) -> usize {
    cell.chars().count()
}

/// Aligns tab-separated text. `\t` and `\v` end cells; `\n` and `\f` end lines.
pub(crate) fn align(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split(['\n', '\x0c'])
        .map(|line| line.split(['\t', '\x0b']).collect())
        .collect();
    let mut aligner = Aligner {
        lines,
        widths: Vec::new(),
        minwidth,
        padding,
        out: String::with_capacity(text.len()),
    };
    aligner.format(0, aligner.lines.len());
    aligner.out
}

struct Aligner<'a> {
    /// Every line has at least one cell: the text after its last tab.
    lines: Vec<Vec<&'a str>>,
    /// Widths of the columns to the left of the one being laid out.
    widths: Vec<usize>,
    minwidth: usize,
    padding: usize,
    out: String,
}

impl Aligner<'_> {
    /// Whether `line` has a tab-terminated cell in `column`.
    fn has_cell(&self, line: usize, column: usize) -> bool {
        column + 1 < self.lines[line].len()
    }

    fn format(&mut self, first: usize, end: usize) {
        let column = self.widths.len();
        let mut written = first;
        let mut line = first;
        while line < end {
            if !self.has_cell(line, column) {
                line += 1;
                continue;
            }
            // Lines before this block have no cell in this column: their
            // layout is fully determined by the widths known so far.
            self.write_lines(written, line);
            let block_start = line;
            let mut block_width = self.minwidth;
            while line < end && self.has_cell(line, column) {
                block_width = block_width.max(width(self.lines[line][column]) + self.padding);
                line += 1;
            }
            self.widths.push(block_width);
            self.format(block_start, line);
            self.widths.pop();
            written = line;
        }
        self.write_lines(written, end);
    }

    fn write_lines(&mut self, first: usize, end: usize) {
        for index in first..end {
            for (column, cell) in self.lines[index].iter().enumerate() {
                self.out.push_str(cell);
                if let Some(&cell_width) = self.widths.get(column) {
                    let fill = cell_width.saturating_sub(width(cell));
                    self.out.extend(std::iter::repeat_n(' ', fill));
                }
            }
            // The final line is whatever followed the last newline; it has none.
            if index + 1 < self.lines.len() {
                self.out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::align;

    fn docker(text: &str) -> String {
        align(text, 10, 3)
    }

    #[test]
    fn aligns_like_docker_images() {
        let text =
            "REPOSITORY\tTAG\tIMAGE ID\nalpine\tlatest\tabc\nregistry.example.com/app\tv1\tdef\n";
        assert_eq!(
            docker(text),
            "REPOSITORY                 TAG       IMAGE ID\n\
             alpine                     latest    abc\n\
             registry.example.com/app   v1        def\n"
        );
    }

    #[test]
    fn minimum_width_applies_to_short_columns() {
        assert_eq!(docker("A\tB\nx\ty\n"), "A         B\nx         y\n");
    }

    #[test]
    fn a_line_without_tabs_ends_the_block() {
        // The single-cell line splits column 0 into two independent blocks.
        let text = "aaaaaaaaaaaaaaa\tb\nplain\nc\td\n";
        assert_eq!(docker(text), "aaaaaaaaaaaaaaa   b\nplain\nc         d\n");
    }

    #[test]
    fn later_columns_form_nested_blocks() {
        // Column 1 exists only on the first two lines, so the third line's
        // trailing cell does not widen it.
        let text = "a\tb\tc\na\tbb\tc\na\tthis-is-long\n";
        assert_eq!(
            docker(text),
            "a         b         c\na         bb        c\na         this-is-long\n"
        );
    }

    #[test]
    fn trailing_tab_pads_last_column_and_counts_characters() {
        assert_eq!(docker("é\tx\t\n"), "é         x         \n");
        assert_eq!(docker("no tabs"), "no tabs");
        assert_eq!(docker(""), "");
    }
}

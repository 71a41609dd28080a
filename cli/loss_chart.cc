#include "cli/loss_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace tributary::cli {
namespace {

constexpr int kLabelWidth = 9;  // "   2.3456"
constexpr int kMinWidth = 24;
constexpr int kMinHeight = 2;

std::string YLabel(double value) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%*.4g", kLabelWidth, value);
  std::string label(buf);
  return label.size() > static_cast<size_t>(kLabelWidth) ? label.substr(0, kLabelWidth) : label;
}

// The row (0 = top) of `value` on a grid of `height` rows spanning [lo, hi].
int RowOf(double value, double lo, double hi, int height) {
  if (hi <= lo) return height / 2;
  const double frac = (hi - value) / (hi - lo);
  return std::clamp(static_cast<int>(std::lround(frac * (height - 1))), 0, height - 1);
}

void Mark(std::vector<std::string>& grid, int row, int col, char mark) {
  char& cell = grid[static_cast<size_t>(row)][static_cast<size_t>(col)];
  cell = (cell == ' ' || cell == mark) ? mark : kBothMark;
}

}  // namespace

std::string RenderLossChart(const std::vector<RoundLoss>& rounds, int width, int height) {
  width = std::max(width, kMinWidth);
  height = std::max(height, kMinHeight);
  double lo = std::numeric_limits<double>::infinity();
  double hi = -lo;
  for (const RoundLoss& r : rounds) {
    for (double v : {r.train_loss, r.heldout_loss}) {
      if (!std::isfinite(v)) continue;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  if (!(lo <= hi)) return "loss: no measured loss yet\n";
  const int plot_width = width - kLabelWidth - 2;  // " |"
  std::vector<std::string> grid(static_cast<size_t>(height), std::string(static_cast<size_t>(plot_width), ' '));
  const size_t n = rounds.size();
  const auto column = [&](size_t i) {
    return n <= 1 ? 0 : static_cast<int>((i * static_cast<size_t>(plot_width - 1)) / (n - 1));
  };
  for (size_t i = 0; i < n; ++i) {
    if (std::isfinite(rounds[i].train_loss))
      Mark(grid, RowOf(rounds[i].train_loss, lo, hi, height), column(i), kTrainMark);
    if (std::isfinite(rounds[i].heldout_loss))
      Mark(grid, RowOf(rounds[i].heldout_loss, lo, hi, height), column(i), kHeldOutMark);
  }
  std::string out;
  for (int row = 0; row < height; ++row) {
    std::string label(kLabelWidth, ' ');
    if (row == 0) label = YLabel(hi);
    if (row == height - 1) label = YLabel(lo);
    std::string line = label + " |" + grid[static_cast<size_t>(row)];
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  out += std::string(kLabelWidth, ' ') + " +" + std::string(static_cast<size_t>(plot_width), '-') + "\n";
  // Round numbers under the first and last columns.
  std::string axis(static_cast<size_t>(width), ' ');
  const std::string first = "round " + std::to_string(n > 0 ? rounds.front().round : 0);
  axis.replace(kLabelWidth + 2, std::min(first.size(), static_cast<size_t>(plot_width)), first, 0,
               std::min(first.size(), static_cast<size_t>(plot_width)));
  if (n > 1) {
    const std::string last = std::to_string(rounds.back().round);
    const size_t end = static_cast<size_t>(kLabelWidth + 2 + column(n - 1)) + 1;
    if (end >= last.size() && end - last.size() > kLabelWidth + 2 + first.size())
      axis.replace(end - last.size(), last.size(), last);
  }
  while (!axis.empty() && axis.back() == ' ') axis.pop_back();
  out += axis + "\n";
  out += std::string(kLabelWidth + 2, ' ') + kTrainMark + " train  " + kHeldOutMark + " held-out  " + kBothMark +
         " both\n";
  return out;
}

}  // namespace tributary::cli

// The loss curve of `tributary status --watch`, drawn in the terminal: train and held-out loss per committed
// round as points on a character grid. A pure function of its inputs, so it is tested without a terminal.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tributary::cli {

// One committed round's losses; NaN (not measured) is drawn as a gap.
struct RoundLoss {
  uint64_t round = 0;
  double train_loss = 0;
  double heldout_loss = 0;
};

inline constexpr char kTrainMark = '*';
inline constexpr char kHeldOutMark = 'o';
inline constexpr char kBothMark = '#';  // train and held-out fall in the same cell

// `height` plot rows (at least 2), each "<y label> |<plot>", the highest loss at the top; then the x axis
// ("+----"), a line naming the first and last round under their columns, and the legend. Every line is at
// most `width` columns (at least 24). Rounds are spread over the plot's columns in order (the first at
// its left edge, the last at its right; a single round at the left); a constant series sits on the middle
// row. Without any measured loss the chart is one line saying so.
std::string RenderLossChart(const std::vector<RoundLoss>& rounds, int width, int height);

}  // namespace tributary::cli

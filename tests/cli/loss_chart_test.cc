// RenderLossChart: where the marks of a loss curve land on the grid.
#include "cli/loss_chart.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace tributary::cli {
namespace {

struct Cell {
  int row;
  int col;
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<std::string> Lines(const std::string& chart) {
  std::vector<std::string> lines;
  std::istringstream in(chart);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The plot rows: the lines "<label> |<plot>" before the x axis ("<spaces> +---").
std::vector<std::string> PlotRows(const std::string& chart) {
  std::vector<std::string> rows;
  for (const std::string& line : Lines(chart)) {
    const size_t bar = line.find(" |");
    if (bar == std::string::npos) break;
    rows.push_back(line.substr(bar + 2));
  }
  return rows;
}

// Every cell holding `mark` (or the shared mark), in column order.
std::vector<Cell> Marks(const std::string& chart, char mark) {
  std::vector<Cell> cells;
  const std::vector<std::string> rows = PlotRows(chart);
  for (int row = 0; row < static_cast<int>(rows.size()); ++row) {
    for (int col = 0; col < static_cast<int>(rows[row].size()); ++col) {
      if (rows[row][col] == mark || rows[row][col] == kBothMark) cells.push_back({row, col});
    }
  }
  std::sort(cells.begin(), cells.end(), [](const Cell& a, const Cell& b) { return a.col < b.col; });
  return cells;
}

TEST(LossChartTest, FallingSeriesStartsHighAndEndsLow) {
  std::vector<RoundLoss> rounds;
  for (int r = 1; r <= 10; ++r) rounds.push_back({static_cast<uint64_t>(r), 5.0 - 0.4 * r, 5.2 - 0.3 * r});
  const std::string chart = RenderLossChart(rounds, 60, 10);
  const std::vector<Cell> train = Marks(chart, kTrainMark);
  ASSERT_EQ(train.size(), 10u) << chart;
  // Train 4.6 .. 1.0, held-out 4.9 .. 2.2: the grid spans 1.0 (bottom row) to 4.9 (top row).
  EXPECT_EQ(train.front().row, 1) << chart;
  EXPECT_EQ(train.back().row, 9) << "the lowest loss is on the bottom row\n" << chart;
  for (size_t i = 1; i < train.size(); ++i) EXPECT_GE(train[i].row, train[i - 1].row) << chart;
  EXPECT_EQ(train.front().col, 0);
  EXPECT_EQ(train.back().col, 60 - 9 - 2 - 1) << chart;
  const std::vector<Cell> heldout = Marks(chart, kHeldOutMark);
  ASSERT_EQ(heldout.size(), 10u) << chart;
  EXPECT_EQ(heldout.front().row, 0) << "the highest loss is on the top row\n" << chart;
  EXPECT_LT(heldout.front().row, heldout.back().row) << chart;
  // The y labels are the extremes; the x axis names the first and last rounds.
  EXPECT_EQ(Lines(chart)[0].substr(0, 11), "      4.9 |") << chart;
  EXPECT_EQ(Lines(chart)[9].substr(0, 11), "        1 |") << chart;
  EXPECT_NE(chart.find("round 1"), std::string::npos) << chart;
  EXPECT_NE(Lines(chart)[11].find("10"), std::string::npos) << chart;
  for (const std::string& line : Lines(chart)) EXPECT_LE(line.size(), 60u) << line;
}

TEST(LossChartTest, NaNLossesAreGaps) {
  const std::vector<RoundLoss> rounds = {{1, 3.0, kNaN}, {2, kNaN, kNaN}, {3, 2.0, 2.5}, {4, 1.0, kNaN}};
  const std::string chart = RenderLossChart(rounds, 40, 6);
  const std::vector<Cell> train = Marks(chart, kTrainMark);
  ASSERT_EQ(train.size(), 3u) << chart;
  const std::vector<Cell> heldout = Marks(chart, kHeldOutMark);
  ASSERT_EQ(heldout.size(), 1u) << chart;
  // Round 2's column (a third of the way) holds no mark at all.
  const int round2_col = (1 * (40 - 11 - 1)) / 3;
  for (const std::string& row : PlotRows(chart)) {
    if (static_cast<int>(row.size()) > round2_col) {
      EXPECT_EQ(row[round2_col], ' ') << chart;
    }
  }
}

TEST(LossChartTest, SingleRoundIsDrawn) {
  const std::string chart = RenderLossChart({{7, 2.5, 2.75}}, 80, 8);
  const std::vector<Cell> train = Marks(chart, kTrainMark);
  const std::vector<Cell> heldout = Marks(chart, kHeldOutMark);
  ASSERT_EQ(train.size(), 1u) << chart;
  ASSERT_EQ(heldout.size(), 1u) << chart;
  EXPECT_EQ(train[0].col, 0);
  EXPECT_GT(train[0].row, heldout[0].row) << "the lower train loss sits below the held-out loss\n" << chart;
  EXPECT_NE(chart.find("round 7"), std::string::npos) << chart;
}

TEST(LossChartTest, ConstantSeriesSitsOnTheMiddleRow) {
  std::vector<RoundLoss> rounds;
  for (int r = 1; r <= 5; ++r) rounds.push_back({static_cast<uint64_t>(r), 1.5, kNaN});
  const std::string chart = RenderLossChart(rounds, 50, 9);
  const std::vector<Cell> train = Marks(chart, kTrainMark);
  ASSERT_EQ(train.size(), 5u) << chart;
  for (const Cell& c : train) EXPECT_EQ(c.row, 4) << chart;
}

TEST(LossChartTest, SharedCellsAndNoLoss) {
  const std::string both = RenderLossChart({{1, 2.0, 2.0}, {2, 1.0, 1.0}}, 30, 4);
  EXPECT_EQ(PlotRows(both)[0][0], kBothMark) << both;
  EXPECT_EQ(RenderLossChart({}, 80, 10), "loss: no measured loss yet\n");
  EXPECT_EQ(RenderLossChart({{1, kNaN, kNaN}}, 80, 10), "loss: no measured loss yet\n");
  // Tiny sizes are raised to the minimum instead of breaking the layout.
  EXPECT_EQ(Marks(RenderLossChart({{1, 2.0, kNaN}, {2, 1.0, kNaN}}, 3, 1), kTrainMark).size(), 2u);
}

}  // namespace
}  // namespace tributary::cli

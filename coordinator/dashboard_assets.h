// The dashboard's static files (coordinator/dashboard/: index.html, app.js, style.css), compiled into
// the binary at build time (coordinator/dashboard/embed.cmake), so the daemon serves the page with no
// file on disk and the page fetches nothing from anywhere else.
#pragma once

#include <cstddef>
#include <string_view>

namespace tributary {

struct DashboardAsset {
  std::string_view name;          // "index.html"
  std::string_view content_type;  // "text/html; charset=utf-8"
  std::string_view body;
};

// The embedded files (defined in the generated dashboard_assets.cc).
extern const DashboardAsset kDashboardAssets[];
extern const size_t kDashboardAssetCount;

// The embedded file called `name`; nullptr when there is none.
const DashboardAsset* FindDashboardAsset(std::string_view name);

}  // namespace tributary

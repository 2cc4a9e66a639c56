// fisedit-bench's terminal table (report.h), rendered from the report JSON that --json writes.
#include "bench/report.h"

#include "bench/fidelity.h"

#include <algorithm>
#include <string>

namespace fisedit::bench {
namespace {

std::string gib(const nlohmann::json& bytes) {
  if (!bytes.is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes.get<double>() / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

void stage_row(std::FILE* out, const char* label, const nlohmann::json& stage) {
  if (stage.contains("skipped")) {
    std::fprintf(out, "%-26s skipped: %s\n", label, stage["skipped"].get<std::string>().c_str());
    return;
  }
  const auto& t = stage["time_ms"];
  const auto& m = stage["memory"];
  std::fprintf(out, "%-26s %10.2f %9.2f %9.2f %8.2f %4d %12s %12s %12s\n", label, t["median"].get<double>(),
               t["min"].get<double>(), t["max"].get<double>(), t["stddev"].get<double>(), t["n"].get<int>(),
               gib(m["weights_bytes"]).c_str(), gib(m["peak_bytes"]).c_str(), gib(m["peak_above_weights_bytes"]).c_str());
}

}  // namespace

void print_report(const nlohmann::json& r, std::FILE* out) {
  const auto& model = r["model"];
  const auto& s = r["settings"];
  const auto& res = r["results"];
  std::string what = model["arch"].get<std::string>() + ": " +
                     (model.contains("description") ? model["description"].get<std::string>() : model["source"].get<std::string>());
  if (model["random_weights"].get<bool>()) what += ", random weights";
  const auto& params = model["parameters"];
  std::fprintf(out, "model      %s\n", what.c_str());
  std::fprintf(out, "           %.1fM U-Net + %.1fM text encoder + %.1fM VAE parameters, %s, %s in %.1f s\n",
               params["unet"].get<double>() / 1e6, params["text_encoder"].get<double>() / 1e6,
               params["vae"].get<double>() / 1e6, model["weights_dtype"].get<std::string>().c_str(),
               model["random_weights"].get<bool>() ? "generated" : "loaded", model["load_ms"].get<double>() / 1000.0);
  std::fprintf(out, "device     %s\n", r["device"]["name"].get<std::string>().c_str());
  std::fprintf(out, "date       %s\n", r["date"].get<std::string>().c_str());
  std::fprintf(out, "command    %s\n", r["command"].get<std::string>().c_str());
  std::fprintf(out, "settings   %dx%d (latents %dx%d), CFG %.1f (batch 2), %d steps %s; %d repeats after %d warm-up\n\n",
               s["width"].get<int>(), s["height"].get<int>(), s["width"].get<int>() / 8, s["height"].get<int>() / 8,
               s["cfg"].get<double>(), s["steps"].get<int>(), s["scheduler"].get<std::string>().c_str(),
               s["repeat"].get<int>(), s["warmup"].get<int>());

  std::fprintf(out, "%-26s %10s %9s %9s %8s %4s %12s %12s %12s\n", "stage (ms)", "median", "min", "max", "stddev", "n",
               "weights", "peak", "above wts");
  stage_row(out, "text encoder (batch 2)", res["text_encoder"]);
  stage_row(out, "U-Net step (batch 2)", res["unet_step"]);
  if (res["unet_step"].contains("enqueue_ms"))
    std::fprintf(out, "  host enqueue %.2f ms of it (close to the step time: launch-bound)\n",
                 res["unet_step"]["enqueue_ms"]["median"].get<double>());
  stage_row(out, "VAE decode (batch 1)", res["vae_decode"]);
  if (res["vae_decode"].contains("profile")) {
    std::fprintf(out, "  VAE ops (device ms, each op timed alone):");
    int shown = 0;
    for (const auto& op : res["vae_decode"]["profile"])
      if (shown++ < 10)
        std::fprintf(out, " %s %.2f (%d)", op["op"].get<std::string>().c_str(), op["total_ms"].get<double>(), op["calls"].get<int>());
    std::fprintf(out, "\n");
  }
  const auto& g = res["generation"];
  const std::string label = "generation (" + std::to_string(s["steps"].get<int>()) + " steps)";
  stage_row(out, label.c_str(), g);
  if (!g.contains("skipped")) {
    std::fprintf(out, "  of which: text encoder %.2f, U-Net %.2f (%.2f per step), VAE %.2f (medians)\n",
                 g["text_encoder_ms"]["median"].get<double>(), g["unet_ms"]["median"].get<double>(),
                 g["unet_per_step_ms"]["median"].get<double>(), g["vae_ms"]["median"].get<double>());
    if (g.contains("cached_time_ms"))
      std::fprintf(out, "  kept for editing (generate_cached, as the app runs it): %.2f ms, U-Net %.2f per step\n",
                   g["cached_time_ms"]["median"].get<double>(), g["cached_unet_per_step_ms"]["median"].get<double>());
    const auto& c = g["checks"];
    std::fprintf(out, "  output: latents rms %.3g, max |x| %.3g, %s\n", c["latents_rms"].get<double>(),
                 c["latents_max_abs"].get<double>(), c["finite"].get<bool>() ? "all finite" : "NaN OR INF");
  }
  const auto& driver = g.contains("memory") ? g["memory"].value("driver", nlohmann::json()) : nlohmann::json();
  if (driver.is_object())
    std::fprintf(out, "driver     %s used of %s (after generation; pool cache and CUDA context included)\n",
                 gib(driver["used_bytes"]).c_str(), gib(driver["total_bytes"]).c_str());
  const auto& e = res["edit"];
  if (e.is_object() && !e.contains("skipped")) {
    std::fprintf(out, "\nsparse edit steps (batch 2)    median ms   speed-up   host enqueue ms   (dense step %.2f ms; cache %s per step)\n",
                 e["dense_time_ms"]["median"].get<double>(), gib(e["cache_bytes_per_step"]).c_str());
    for (const auto& row : e["sparse"])
      std::fprintf(out, "  edit region %5.1f%%          %9.2f   %7.2fx   %9.2f\n", 100.0 * row["edit_fraction"].get<double>(),
                   row["time_ms"]["median"].get<double>(), row["speedup"].get<double>(),
                   row.contains("enqueue_ms") ? row["enqueue_ms"]["median"].get<double>() : 0.0);
    if (e.contains("spill_steps")) {
      const auto& sp = e["spill_steps"];
      std::fprintf(out, "  cache beyond a device budget of %s: %d of %d steps spilled, %s device + %s pinned host (%.1f%% region)\n",
                   gib(sp["device_budget_bytes"]).c_str(), sp["steps_spilled"].get<int>(), sp["steps"].get<int>(),
                   gib(sp["cache_bytes_device"]).c_str(), gib(sp["cache_bytes_host"]).c_str(),
                   100.0 * sp["edit_fraction"].get<double>());
      std::fprintf(out, "    %d sparse steps: resident %.2f ms, spilled + prefetched %.2f ms (%.3fx; %s copied per run)\n",
                   sp["steps"].get<int>(), sp["resident_time_ms"]["median"].get<double>(),
                   sp["spilled_time_ms"]["median"].get<double>(), sp["slowdown"].get<double>(),
                   gib(sp["prefetched_bytes_per_run"]).c_str());
    }
    if (e.contains("spill_edit") && !e["spill_edit"].contains("skipped")) {
      const auto& se = e["spill_edit"];
      std::fprintf(out, "    whole edit (painted %.1f%%): resident %.2f ms, spilled %.2f ms (%.3fx; cache %s device + %s host)\n",
                   100.0 * se["edit_fraction"].get<double>(), se["resident"]["edit_ms"]["median"].get<double>(),
                   se["spilled"]["edit_ms"]["median"].get<double>(), se["slowdown"].get<double>(),
                   gib(se["spilled"]["cache_bytes_device"]).c_str(), gib(se["spilled"]["cache_bytes_host"]).c_str());
    }
    if (e.contains("recorded_explicit_step_ms"))
      std::fprintf(out, "  a kept step with explicit cross-attention (a cached generation's first steps): %.2f ms\n",
                   e["recorded_explicit_step_ms"]["median"].get<double>());
    if (e.contains("edit_replayed_step_5pct") && e["edit_replayed_step_5pct"].contains("time_ms")) {
      const auto& er = e["edit_replayed_step_5pct"];
      std::fprintf(out, "  edit_replayed_step_5pct (as an edit replays it: copies in and out, scatters in place): %.3f ms "
                        "(enqueue %.3f; %s in, %s out per step)\n",
                   er["time_ms"]["median"].get<double>(), er["enqueue_ms"]["median"].get<double>(),
                   gib(er["copied_in_bytes_per_step"]).c_str(), gib(er["copied_out_bytes_per_step"]).c_str());
    }
    for (const char* key : {"replayed_sparse_step_5pct", "replayed_sparse_step_5pct_time_in_step"})
      if (e.contains(key) && e[key].contains("time_ms"))
        std::fprintf(out, "  %s (recorded, replayed; %.1f%% of the latent): %.3f ms (enqueue %.3f)\n", key,
                     100.0 * e[key]["edit_fraction"].get<double>(), e[key]["time_ms"]["median"].get<double>(),
                     e[key]["enqueue_ms"]["median"].get<double>());
    for (const char* key : {"profile_dense_step", "profile_sparse_step_5pct", "profile_recorded_explicit_step"}) {
      if (!e.contains(key)) continue;
      std::fprintf(out, "  %s (device/host ms by op, each op timed alone):\n   ", key);
      int shown = 0;
      for (const auto& op : e[key])
        if (shown++ < 12)
          std::fprintf(out, " %s %.2f/%.2f (%d)", op["op"].get<std::string>().c_str(), op["total_ms"].get<double>(),
                       op.value("host_ms", 0.0), op["calls"].get<int>());
      std::fprintf(out, "\n");
    }
  }
  const auto& sizes = res.contains("edit_sizes") ? res["edit_sizes"] : nlohmann::json();
  if (sizes.is_object() && sizes.contains("sizes")) {
    std::fprintf(out, "\nwhole edits (%d steps %s; detected mask replaced by a blob; medians, ms; first: the first\n"
                      "edit with that mask, its shapes new)\n",
                 sizes["steps"].get<int>(), sizes["scheduler"].get<std::string>().c_str());
    if (sizes.contains("prepare_editing") && sizes["prepare_editing"].is_object()) {
      const auto& p = sizes["prepare_editing"];
      std::fprintf(out, "  after the generation, editing prepared (a throwaway 5%% edit): %.1f ms (detect %.1f, first step "
                        "%.1f, decode %.1f); the first edit below follows it\n",
                   p["edit_ms"].get<double>(), p["detect_ms"].get<double>(), p["first_sparse_step_ms"].get<double>(),
                   p["decode_ms"].get<double>());
    } else {
      std::fprintf(out, "  editing not prepared after the generation (FISEDIT_BENCH_PREPARE_EDITING=0)\n");
    }
    std::fprintf(out, "  %-8s %9s %9s %9s %9s %11s %9s %13s %11s %12s\n", "region", "edit", "first", "detect", "sparse",
                 "per step", "decode", "dense ref.", "cache", "PSNR inside");
    for (const auto& row : sizes["sizes"]) {
      const auto psnr = row["psnr_inside_db"];
      const std::string p = psnr.is_null() ? "identical" : std::to_string(psnr.get<double>()).substr(0, 5) + " dB";
      std::fprintf(out, "  %6.1f%%  %9.1f %9.1f %9.1f %9.1f %11.2f %9.1f %13.1f %11s %12s\n",
                   100.0 * row["edit_fraction"].get<double>(), row["edit_ms"]["median"].get<double>(),
                   row["first_edit"]["edit_ms"].get<double>(), row["detect_ms"]["median"].get<double>(),
                   row["sparse_ms"]["median"].get<double>(), row["sparse_step_ms"]["median"].get<double>(),
                   row["decode_ms"]["median"].get<double>(), row["dense_reference_edit_ms"].get<double>(),
                   gib(row["cache_bytes"]).c_str(), p.c_str());
      const auto& f = row["first_edit"];
      std::fprintf(out, "  %8s  first: detect %.1f, sparse %.1f (first step %.1f; later runs' %.1f), decode %.1f\n", "",
                   f["detect_ms"].get<double>(), f["sparse_ms"].get<double>(), f["first_sparse_step_ms"].get<double>(),
                   row["first_sparse_step_ms"]["median"].get<double>(), f["decode_ms"].get<double>());
      std::fprintf(out, "  %8s  per sparse step, host: prepare %.2f, enqueue %.2f, wait %.2f, after %.2f ms\n", "",
                   row["sparse_prepare_ms_per_step"]["median"].get<double>(),
                   row["sparse_enqueue_ms_per_step"]["median"].get<double>(),
                   row["sparse_wait_ms_per_step"]["median"].get<double>(),
                   row["sparse_after_ms_per_step"]["median"].get<double>());
      std::fprintf(out, "  %8s  enqueue %.2f ms (first edit %.2f); device memory from the driver: "
                        "%.0f blocks per edit (first edit %zu in %.1f ms), %.0f cache flushes (first %zu)\n",
                   "", row["sparse_enqueue_ms_per_step"]["median"].get<double>(),
                   f["sparse_enqueue_ms"].get<double>() / std::max(1, sizes["steps"].get<int>() - row["detect_steps"].get<int>()),
                   row["driver_allocations"]["median"].get<double>(), f["driver_allocations"].get<std::size_t>(),
                   f.value("driver_allocation_ms", 0.0), row["cache_flushes"]["median"].get<double>(), f["cache_flushes"].get<std::size_t>());
      if (row.contains("new_mask_edit")) {
        const auto& nm = row["new_mask_edit"];
        std::fprintf(out, "  %8s  a new mask (%.1f%%): edit %.1f, first step %.1f, sparse %.1f, decode %.1f ms, "
                          "%zu driver blocks in %.1f ms, recording %.1f ms\n", "",
                     100.0 * nm["edit_fraction"].get<double>(), nm["edit_ms"].get<double>(),
                     nm["first_sparse_step_ms"].get<double>(), nm["sparse_ms"].get<double>(), nm["decode_ms"].get<double>(),
                     nm["driver_allocations"].get<std::size_t>(), nm["driver_allocation_ms"].get<double>(),
                     nm["replay_record_ms"].get<double>());
      }
      if (row.contains("replay_copied_in_bytes"))
        std::fprintf(out, "  %8s  copies around the replayed steps per edit: %s in (cached entries), %s out (the new record); "
                          "the edit's own record %s\n", "",
                     gib(row["replay_copied_in_bytes"]).c_str(), gib(row["replay_copied_out_bytes"]).c_str(),
                     gib(row.value("own_cache_bytes", nlohmann::json(nullptr))).c_str());
      if (row.contains("step_marks") && !row["step_marks"].empty()) {
        std::string line;
        for (const auto& [name, part] : row["step_marks"].items()) {
          char buf[96];
          std::snprintf(buf, sizeof buf, " %s %.3f", name.c_str(), part["median"].get<double>());
          line += buf;
        }
        std::fprintf(out, "  %8s  sparse step parts on the device (medians, ms; idle before each included):%s\n", "", line.c_str());
      }
      if (row.contains("profile_whole_edit") && row["profile_whole_edit"].is_array() && !row["profile_whole_edit"].empty()) {
        std::string line;
        for (const auto& op : row["profile_whole_edit"]) {
          char buf[128];
          std::snprintf(buf, sizeof buf, " %s %.2f/%.2f (%d)", op["op"].get<std::string>().c_str(),
                        op["total_ms"].get<double>(), op["host_ms"].get<double>(), op["calls"].get<int>());
          line += buf;
        }
        std::fprintf(out, "  %8s  whole edit op by op (device/host ms, calls):%s\n", "", line.c_str());
      }
    }
  } else if (sizes.is_object() && sizes.contains("skipped") && sizes["skipped"] != "not in --stages") {
    std::fprintf(out, "\nwhole edits: skipped: %s\n", sizes["skipped"].get<std::string>().c_str());
  }
  const auto& live = res.contains("live") ? res["live"] : nlohmann::json();
  if (live.is_object() && live.contains("pause_to_image_ms")) {
    std::fprintf(out,
                 "\nlive editing (%.1f%% edit, cancelled after %.1f ms, %d of %d cancelled): cancel %.1f ms, "
                 "edit %.1f ms, pause to image %.1f ms (medians)\n",
                 100.0 * live["edit_fraction"].get<double>(), live["cancelled_after_ms"].get<double>(),
                 live["cancelled"].get<int>(), live["rounds"].get<int>(),
                 live["cancel_latency_ms"]["median"].get<double>(), live["edit_ms"]["median"].get<double>(),
                 live["pause_to_image_ms"]["median"].get<double>());
  } else if (live.is_object() && live.contains("skipped") && live["skipped"] != "not in --stages") {
    std::fprintf(out, "\nlive editing: skipped: %s\n", live["skipped"].get<std::string>().c_str());
  }
  const auto& att = res.contains("attention") ? res["attention"] : nlohmann::json();
  if (att.is_object() && att.contains("cases")) {
    const auto& env = att["kernel_env"];
    const auto split_env = att.contains("split_env") ? att["split_env"] : nlohmann::json();
    const auto cudnn_env = att.contains("cudnn_env") ? att["cudnn_env"] : nlohmann::json();
    std::fprintf(out,
                 "\nattention op alone (FISEDIT_ATTENTION=%s, FISEDIT_ATTENTION_SPLIT=%s, FISEDIT_ATTENTION_CUDNN=%s)"
                 "   median ms/call   TFLOP/s   device ms   TFLOP/s\n",
                 env.is_string() ? env.get<std::string>().c_str() : "unset",
                 split_env.is_string() ? split_env.get<std::string>().c_str() : "unset",
                 cudnn_env.is_string() ? cudnn_env.get<std::string>().c_str() : "unset");
    for (const auto& c : att["cases"]) {
      std::fprintf(out, "  %-26s [%d, %5d, %5d, h%2d, d%3d] ", c["case"].get<std::string>().c_str(), c["batch"].get<int>(),
                   c["lq"].get<int>(), c["lk"].get<int>(), c["heads"].get<int>(), c["head_dim"].get<int>());
      if (c.contains("skipped")) {
        std::fprintf(out, "skipped: %s\n", c["skipped"].get<std::string>().c_str());
        continue;
      }
      std::fprintf(out, "%9.4f %9.2f", c["time_ms"]["median"].get<double>(), c["tflops"].get<double>());
      if (c.contains("device_ms_mean"))
        std::fprintf(out, " %11.4f %9.2f", c["device_ms_mean"].get<double>(), c["device_tflops"].get<double>());
      std::fprintf(out, "\n");
    }
  }
  const auto& fid = res.contains("fidelity") ? res["fidelity"] : nlohmann::json();
  if (fid.is_object() && fid.contains("summary")) fidelity::print_fidelity(fid, out);
  else if (fid.is_object() && fid.contains("skipped"))
    std::fprintf(out, "\nedit fidelity: skipped: %s\n", fid["skipped"].get<std::string>().c_str());
  std::fprintf(out, "host       peak RSS %s\n", gib(r["host_peak_rss_bytes"]).c_str());
}

}  // namespace fisedit::bench

// Generate events with a hepgen generator compiled by SOFIE: no Python, no ONNX Runtime.
//
// The header "generator.hxx" (namespace SOFIE_generator) is written by `hepgen export` into
// EXPORT/sofie/. It is compiled once; its weights are read at run time from a safetensors file,
// so one SOFIE_generator::Session per weight file gives one generator per Bayesian draw.
//
//   generate_events EXPORT_DIR -o PREFIX [-n EVENTS] [--seed S] [--batch B]
//                   [--noise noise.f32] [--weights FILE]...
//
// Noise: float32 [EVENTS, noise_dim], read from --noise, or drawn here with std::mt19937_64,
// one column per word of EXPORT/noise_layout.txt ("normal" = N(0,1), "uniform" = U[0,1)).
// A generator that maps source events (layout words "source", DiDi) takes the source events,
// float32 [EVENTS, <input shape>], from --noise; nothing is drawn.
// In a framework, draw it with the framework's random engine instead.
// Weight files: EXPORT/weights.txt (every Bayesian draw, or the single plain set) unless
// --weights is given. Output: one raw float32 file per graph output, PREFIX.out<i>.f32, each
// [n_weight_files, EVENTS, <output shape>]: the same noise through every weight file. Outputs,
// their shapes, units and the object order are listed in EXPORT/manifest.json ("outputs"; for
// Z+jets: momenta [5, 4] = mu1, mu2, j1, j2, j3 x (pt GeV, eta, phi, mass GeV), n_jets, charge).
#include "generator.hxx"

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace gen = SOFIE_generator;

// Per-event sizes, from the shapes SOFIE compiled in (axis 0 is the dynamic batch axis).
constexpr std::size_t per_event(const gen::TensorDims &dims) {
   std::size_t n = 1;
   for (std::size_t i = 1; i < dims.size; ++i) n *= dims.data[i].dim;
   return n;
}
constexpr std::size_t kInputs = gen::inputTensorDims.size();
constexpr std::size_t kOutputs = gen::outputTensorDims.size();
constexpr std::size_t kNoiseDim = per_event(gen::inputTensorDims[0]);
static_assert(kInputs == 1, "hepgen generators take one input: the noise");

// Session::infer returns one vector (one output) or a vector of vectors (several outputs):
// always hand back one vector per output.
template <class Session>
std::vector<std::vector<float>> infer(Session &s, std::size_t n, const float *noise) {
   auto r = s.infer(n, noise);
   if constexpr (std::is_same_v<decltype(r), std::vector<float>>)
      return {std::move(r)};
   else
      return r;
}

static std::vector<std::string> read_words(const std::string &path) {
   std::ifstream f(path);
   if (!f) throw std::runtime_error("cannot read " + path);
   std::vector<std::string> words;
   for (std::string w; f >> w;) words.push_back(w);
   return words;
}

static std::vector<float> read_floats(const std::string &path, std::size_t count) {
   std::ifstream f(path, std::ios::binary);
   if (!f) throw std::runtime_error("cannot read " + path);
   std::vector<float> v(count);
   f.read(reinterpret_cast<char *>(v.data()), count * sizeof(float));
   if (f.gcount() != std::streamsize(count * sizeof(float)))
      throw std::runtime_error(path + " holds fewer than " + std::to_string(count) + " float32 values");
   return v;
}

int main(int argc, char **argv) try {
   std::string dir, out, noise_file;
   std::vector<std::string> weights;
   std::size_t events = 1000, batch = 1000;
   unsigned long long seed = 1;
   for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
         if (i + 1 >= argc) throw std::runtime_error("missing value after " + a);
         return argv[++i];
      };
      if (a == "-o") out = next();
      else if (a == "-n") events = std::stoull(next());
      else if (a == "--batch") batch = std::stoull(next());
      else if (a == "--seed") seed = std::stoull(next());
      else if (a == "--noise") noise_file = next();
      else if (a == "--weights") weights.push_back(next());
      else if (dir.empty() && a[0] != '-') dir = a;
      else throw std::runtime_error("unknown argument " + a);
   }
   if (dir.empty() || out.empty()) throw std::runtime_error("usage: generate_events EXPORT_DIR -o PREFIX [options]");
   if (weights.empty())
      for (auto &w : read_words(dir + "/weights.txt")) weights.push_back(dir + "/" + w);
   batch = std::min(batch, events);

   // Noise for all events: from a file, or drawn here.
   std::vector<float> noise;
   if (!noise_file.empty()) {
      noise = read_floats(noise_file, events * kNoiseDim);
   } else {
      auto layout = read_words(dir + "/noise_layout.txt");
      if (layout.size() != kNoiseDim) throw std::runtime_error("noise_layout.txt does not match the header");
      for (auto &w : layout)
         if (w == "source") throw std::runtime_error("this generator maps source events (didi): give them with --noise FILE");
      std::mt19937_64 rng(seed);
      std::normal_distribution<float> normal;
      std::uniform_real_distribution<float> uniform;
      noise.resize(events * kNoiseDim);
      for (std::size_t e = 0; e < events; ++e)
         for (std::size_t j = 0; j < kNoiseDim; ++j)
            noise[e * kNoiseDim + j] = layout[j] == "uniform" ? uniform(rng) : normal(rng);
   }

   // One session per weight file: the same compiled graph, different weights. A SOFIE Session
   // keeps pointers into its own buffers, so it must never be copied or moved: hold it by pointer.
   std::vector<std::unique_ptr<gen::Session>> sessions;
   for (auto &w : weights) sessions.push_back(std::make_unique<gen::Session>(w, batch));

   std::vector<std::ofstream> files;
   for (std::size_t i = 0; i < kOutputs; ++i) {
      files.emplace_back(out + ".out" + std::to_string(i) + ".f32", std::ios::binary);
      if (!files.back()) throw std::runtime_error("cannot write " + out + ".out" + std::to_string(i) + ".f32");
   }
   double seconds = 0, cpu_seconds = 0;
   for (auto &session : sessions) {
      for (std::size_t start = 0; start < events; start += batch) {
         std::size_t n = std::min(batch, events - start);
         auto t0 = std::chrono::steady_clock::now();
         std::clock_t c0 = std::clock();
         auto outputs = infer(*session, n, noise.data() + start * kNoiseDim);
         cpu_seconds += double(std::clock() - c0) / CLOCKS_PER_SEC;
         seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
         for (std::size_t i = 0; i < kOutputs; ++i)
            files[i].write(reinterpret_cast<const char *>(outputs[i].data()),
                           n * per_event(gen::outputTensorDims[i]) * sizeof(float));
      }
   }
   for (auto &f : files)
      if (!f.flush()) throw std::runtime_error("writing the output files failed");
   const double total = double(events * sessions.size());
   std::printf("generated %zu events x %zu weight files in %.3f s: %.0f events/s (%.0f events per CPU second)\n",
               events, sessions.size(), seconds, total / seconds, total / cpu_seconds);
   return 0;
} catch (const std::exception &e) {
   std::fprintf(stderr, "generate_events: error: %s\n", e.what());
   return 2;
}

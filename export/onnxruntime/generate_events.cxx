// Generate events with a hepgen export through the ONNX Runtime C++ API, the way CMSSW and
// Athena run ONNX models: float32 inputs with the batch on axis 0, one intra-op and one
// inter-op thread, no thread spinning, and one Ort::Session per Bayesian draw.
//
//   generate_events EXPORT_DIR -o PREFIX [-n EVENTS] [--batch B] [--seed S] [--noise noise.f32]
//                   [--weights FILE]...
//
// The graph (EXPORT/generator.onnx) is read from disk once. Its float32 weights are external
// data under the location name "weights.safetensors"; every weight file of the export
// (EXPORT/weights.txt: the Bayesian draws, or the single plain set) has the same layout, so
// session k is the same graph bytes plus weight file k handed over in memory
// (AddExternalInitializersFromFilesInMemory). Switching draw never re-exports the graph.
//
// Noise: float32 [EVENTS, noise_dim] from --noise, or drawn here with std::mt19937_64 per
// EXPORT/noise_layout.txt ("normal" = N(0,1), "uniform" = U[0,1)); in a framework use its
// random engine. Output: PREFIX.out<i>.f32 per graph output, each float32
// [n_weight_files, EVENTS, <output shape>] (see EXPORT/manifest.json "outputs").
#include <onnxruntime_cxx_api.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

static std::vector<char> read_bytes(const std::string &path) {
   std::ifstream f(path, std::ios::binary);
   if (!f) throw std::runtime_error("cannot read " + path);
   return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

static std::vector<std::string> read_words(const std::string &path) {
   std::ifstream f(path);
   if (!f) throw std::runtime_error("cannot read " + path);
   std::vector<std::string> words;
   for (std::string w; f >> w;) words.push_back(w);
   return words;
}

// Session options as in CMSSW/Athena: single-threaded, sequential, no spinning thread pools.
static Ort::SessionOptions base_options() {
   Ort::SessionOptions so;
   so.SetIntraOpNumThreads(1);
   so.SetInterOpNumThreads(1);
   so.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
   so.AddConfigEntry("session.intra_op.allow_spinning", "0");
   so.AddConfigEntry("session.inter_op.allow_spinning", "0");
   return so;
}

// One session: the shared graph bytes + one weight file's bytes under the graph's location name.
static Ort::Session open_session(Ort::Env &env, const std::vector<char> &graph, std::vector<char> &weights) {
   Ort::SessionOptions so = base_options();
   std::vector<std::basic_string<ORTCHAR_T>> names{ORT_TSTR("weights.safetensors")};
   std::vector<char *> buffers{weights.data()};
   std::vector<size_t> lengths{weights.size()};
   so.AddExternalInitializersFromFilesInMemory(names, buffers, lengths);
   return Ort::Session(env, graph.data(), graph.size(), so);  // ORT copies the weights it needs
}

int main(int argc, char **argv) try {
   std::string dir, out, noise_file;
   std::vector<std::string> weight_files;
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
      else if (a == "--weights") weight_files.push_back(next());
      else if (dir.empty() && a[0] != '-') dir = a;
      else throw std::runtime_error("unknown argument " + a);
   }
   if (dir.empty() || out.empty()) throw std::runtime_error("usage: generate_events EXPORT_DIR -o PREFIX [options]");
   if (weight_files.empty())
      for (auto &w : read_words(dir + "/weights.txt")) weight_files.push_back(dir + "/" + w);
   batch = std::min(batch, events);

   Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "hepgen");
   const std::vector<char> graph = read_bytes(dir + "/generator.onnx");
   std::vector<Ort::Session> sessions;
   for (auto &w : weight_files) {
      std::vector<char> blob = read_bytes(w);
      sessions.push_back(open_session(env, graph, blob));
   }

   // Names and per-event sizes of inputs and outputs, from the graph (axis 0 = batch).
   Ort::AllocatorWithDefaultOptions alloc;
   Ort::Session &s0 = sessions.front();
   if (s0.GetInputCount() != 1) throw std::runtime_error("this example feeds noise only; the graph has more inputs");
   auto in_name = s0.GetInputNameAllocated(0, alloc);
   auto in_shape = s0.GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetShape();
   const std::size_t noise_dim = std::size_t(in_shape.at(1));
   std::vector<Ort::AllocatedStringPtr> out_names_owned;
   std::vector<const char *> out_names;
   std::vector<std::size_t> out_sizes;
   for (std::size_t i = 0; i < s0.GetOutputCount(); ++i) {
      out_names_owned.push_back(s0.GetOutputNameAllocated(i, alloc));
      out_names.push_back(out_names_owned.back().get());
      std::size_t n = 1;
      auto shape = s0.GetOutputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape();
      for (std::size_t d = 1; d < shape.size(); ++d) n *= std::size_t(shape[d]);
      out_sizes.push_back(n);
   }
   const char *in_names[] = {in_name.get()};

   std::vector<float> noise(events * noise_dim);
   if (!noise_file.empty()) {
      std::ifstream f(noise_file, std::ios::binary);
      f.read(reinterpret_cast<char *>(noise.data()), noise.size() * sizeof(float));
      if (f.gcount() != std::streamsize(noise.size() * sizeof(float)))
         throw std::runtime_error(noise_file + " holds fewer than EVENTS x noise_dim float32 values");
   } else {
      auto layout = read_words(dir + "/noise_layout.txt");
      if (layout.size() != noise_dim) throw std::runtime_error("noise_layout.txt does not match the graph");
      std::mt19937_64 rng(seed);
      std::normal_distribution<float> normal;
      std::uniform_real_distribution<float> uniform;
      for (std::size_t e = 0; e < events; ++e)
         for (std::size_t j = 0; j < noise_dim; ++j)
            noise[e * noise_dim + j] = layout[j] == "uniform" ? uniform(rng) : normal(rng);
   }

   std::vector<std::ofstream> files;
   for (std::size_t i = 0; i < out_names.size(); ++i) {
      files.emplace_back(out + ".out" + std::to_string(i) + ".f32", std::ios::binary);
      if (!files.back()) throw std::runtime_error("cannot write " + out + ".out" + std::to_string(i) + ".f32");
   }
   auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
   double seconds = 0, cpu_seconds = 0;  // inference only: wall and process CPU time
   for (auto &session : sessions) {
      for (std::size_t start = 0; start < events; start += batch) {
         const std::size_t n = std::min(batch, events - start);
         const int64_t shape[2] = {int64_t(n), int64_t(noise_dim)};
         Ort::Value input = Ort::Value::CreateTensor<float>(memory, noise.data() + start * noise_dim, n * noise_dim,
                                                            shape, 2);
         auto t0 = std::chrono::steady_clock::now();
         const std::clock_t c0 = std::clock();
         auto outputs = session.Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names.data(), out_names.size());
         cpu_seconds += double(std::clock() - c0) / CLOCKS_PER_SEC;
         seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
         for (std::size_t i = 0; i < outputs.size(); ++i)
            files[i].write(reinterpret_cast<const char *>(outputs[i].GetTensorData<float>()),
                           n * out_sizes[i] * sizeof(float));
      }
   }
   for (auto &f : files)
      if (!f.flush()) throw std::runtime_error("writing the output files failed");
   std::printf("generated %zu events x %zu weight files in %.3f s: %.0f events/s, %.0f events per CPU second\n",
               events, sessions.size(), seconds, double(events * sessions.size()) / seconds,
               double(events * sessions.size()) / cpu_seconds);
   return 0;
} catch (const std::exception &e) {
   std::fprintf(stderr, "generate_events: error: %s\n", e.what());
   return 2;
}

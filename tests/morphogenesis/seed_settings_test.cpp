// SetBlueprint through the driver: per-seed settings on a DORMANT seed are part of the digest (so
// replicas that disagree on them are caught), equal settings keep replicas equal while they train,
// and the reset to DORMANT gives the slot back with the default settings.
#include <gtest/gtest.h>

#include <vector>

#include "morphogenesis/morphogenesis.hpp"

namespace esper::morphogenesis {
namespace {

using lifecycle::Selection;
using lifecycle::State;

Config short_run() {
  Config config;
  config.steps = 80;
  config.germination_interval = 5;  // seed 5 germinates at step 25 and trains with its settings
  return config;
}

TEST(MorphogenesisSeedSettings, SettingsOnADormantSeedAreInTheDigestAndEqualSettingsStayEqual) {
  const Config config = short_run();
  Driver plain(config), one(config), two(config);
  ASSERT_EQ(one.population().seed(5).state(), State::DORMANT);
  ASSERT_EQ(one.digest(), plain.digest());
  const kernels::SeedSettings settings{2, 3e-3f};
  one.set_seed_settings(5, settings);
  EXPECT_EQ(one.layer().seed_settings(5), settings);
  EXPECT_NE(one.digest(), plain.digest()) << "a replica that missed the command must differ";
  two.set_seed_settings(5, settings);
  EXPECT_EQ(one.digest(), two.digest());

  while (one.population().step() < config.steps) {
    one.step();
    two.step();
    plain.step();
  }
  ASSERT_NE(one.population().seed(5).state(), State::DORMANT) << "the seed trained with its settings";
  EXPECT_EQ(one.digest(), two.digest());
  EXPECT_NE(one.digest(), plain.digest());
  // The settings changed what the seed learned, not only the digest's record of them.
  std::vector<float> b_one(kernels::tensor_size(one.layer().config(), kernels::Tensor::SeedB)), b_plain(b_one.size());
  one.layer().read(kernels::Tensor::SeedB, b_one);
  plain.layer().read(kernels::Tensor::SeedB, b_plain);
  const auto& partition = one.layer().partition();
  const int rank = config.rank;
  bool differs = false;
  for (int j = partition.begin(5); j < partition.end(5); ++j) {
    for (int k = 0; k < rank; ++k) {
      const auto i = static_cast<std::size_t>(j * rank + k);
      if (k >= settings.rank) {
        EXPECT_EQ(b_one[i], 0.0f) << "the tail of a rank-2 seed";
      }
      differs |= b_one[i] != b_plain[i];
    }
  }
  EXPECT_TRUE(differs);
}

TEST(MorphogenesisSeedSettings, TheResetToDormantRestoresTheDefaults) {
  Config config = short_run();
  config.auto_advance = false;
  Driver with(config), without(config);
  with.set_seed_settings(3, {1, 0.5f});
  for (auto* d : {&with, &without}) {
    for (const State to : {State::GERMINATED, State::CANCELLED, State::DORMANT}) {
      const auto report = d->transition(Selection::ids({3}), to, "test", true);
      ASSERT_TRUE(report.outcomes.at(0).applied()) << lifecycle::name(to);
    }
  }
  EXPECT_EQ(with.layer().seed_settings(3), with.layer().default_seed_settings());
  EXPECT_EQ(with.digest(), without.digest());
}

TEST(MorphogenesisSeedSettings, ABadSeedOrValueIsRefused) {
  Driver driver(short_run());
  EXPECT_THROW(driver.set_seed_settings(8, {2, 1e-3f}), Error);
  EXPECT_THROW(driver.set_seed_settings(0, {5, 1e-3f}), Error);
  EXPECT_THROW(driver.set_seed_settings(0, {2, 0.0f}), Error);
  EXPECT_EQ(driver.layer().seed_settings(0), driver.layer().default_seed_settings());
}

}  // namespace
}  // namespace esper::morphogenesis

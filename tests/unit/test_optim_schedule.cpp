// ctest-link: crackseg_train
// Learning-rate sequences of every schedule, reduce-on-plateau and early stopping step by
// step (Keras semantics, worked out by hand in the comments), and their JSON state surviving
// a checkpoint round trip mid-run.
#include <gtest/gtest.h>

#include <cmath>

#include "src/core/error.hpp"
#include "src/optim/monitor.hpp"
#include "src/optim/schedule.hpp"

using namespace crackseg;
using nlohmann::json;

TEST(Schedule, ConstantAndStep) {
  auto c = make_schedule(json(nullptr), 0.01);
  EXPECT_EQ(c->name(), "constant");
  EXPECT_EQ(c->lr_at_step(1000, 7), 0.01);
  auto s = make_schedule(json{{"name", "step"}, {"step_size", 2}, {"gamma", 0.5}}, 1.0);
  const double expect[6] = {1, 1, 0.5, 0.5, 0.25, 0.25};
  for (int e = 0; e < 6; ++e) EXPECT_DOUBLE_EQ(s->lr_at_step(e * 10, e), expect[e]) << e;
}

TEST(Schedule, CosineWithWarmup) {
  // 4 epochs of 2 steps, 1 warmup epoch: W = 2, T = 8.
  auto s = make_schedule(json{{"name", "cosine"}, {"warmup", 1}, {"min_lr", 0.1}}, 1.0,
                         ScheduleContext{.epochs = 4, .steps_per_epoch = 2});
  EXPECT_DOUBLE_EQ(s->lr_at_step(0, 0), 0.5);  // (0 + 1) / 2
  EXPECT_DOUBLE_EQ(s->lr_at_step(1, 0), 1.0);
  EXPECT_DOUBLE_EQ(s->lr_at_step(2, 1), 1.0);  // u = 0
  EXPECT_NEAR(s->lr_at_step(5, 2), 0.1 + 0.9 * 0.5, 1e-15);  // u = 3/6
  EXPECT_NEAR(s->lr_at_step(3, 1), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI / 6)), 1e-15);
  EXPECT_DOUBLE_EQ(s->lr_at_step(8, 4), 0.1);  // u = 1, and it stays there
  EXPECT_DOUBLE_EQ(s->lr_at_step(20, 10), 0.1);
  // Without warmup and t_max given explicitly: a half cosine from base to 0 over 2 epochs.
  auto t = make_schedule(json{{"name", "cosine"}, {"t_max", 2}}, 2.0, ScheduleContext{.epochs = 9, .steps_per_epoch = 3});
  EXPECT_DOUBLE_EQ(t->lr_at_step(0, 0), 2.0);
  EXPECT_NEAR(t->lr_at_step(3, 1), 1.0, 1e-15);
  EXPECT_NEAR(t->lr_at_step(6, 2), 0.0, 1e-15);
  EXPECT_THROW((void)make_schedule(json{{"name", "cosine"}}, 1.0), Error);  // no steps_per_epoch
}

TEST(Schedule, ReduceOnPlateauFollowsKerasIncludingCooldownAndMinLr) {
  const json cfg = {{"name", "plateau"}, {"monitor", "val_loss"}, {"factor", 0.5}, {"patience", 2},
                    {"cooldown", 1},      {"min_delta", 0.0},       {"min_lr", 0.2}};
  const double loss[12] = {1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85};
  // e0, e1 improve; e2 wait 1; e3 wait 2 -> 0.5 (cooldown 1); e4 cooldown ends, wait 1;
  // e5 wait 2 -> 0.25; e6 wait 1; e7 -> max(0.125, 0.2) = 0.2; e8 improves; e9, e10 would
  // reduce but lr is at min_lr already.
  const double lr_after[12] = {1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2};
  auto s = make_schedule(cfg, 1.0);
  json saved;
  for (int e = 0; e < 12; ++e) {
    const bool changed = s->end_epoch(e, {{"val_loss", loss[e]}, {"val_f1", 0.5}});
    EXPECT_DOUBLE_EQ(s->lr(), lr_after[e]) << "epoch " << e;
    EXPECT_EQ(changed, e > 0 && lr_after[e] != lr_after[e - 1]) << "epoch " << e;
    EXPECT_DOUBLE_EQ(s->lr_at_step(100, e + 1), lr_after[e]);
    if (e == 4) saved = json::parse(s->state().dump());  // through text, as a checkpoint stores it
  }
  // Resume after epoch 4 from the saved state: the same sequence follows.
  auto r = make_schedule(cfg, 1.0);
  r->load_state(saved);
  for (int e = 5; e < 12; ++e) {
    (void)r->end_epoch(e, {{"val_loss", loss[e]}});
    EXPECT_DOUBLE_EQ(r->lr(), lr_after[e]) << "resumed epoch " << e;
  }
  auto other = make_schedule(json{{"name", "step"}, {"step_size", 1}}, 1.0);
  EXPECT_THROW(other->load_state(saved), InputError);  // schedule changed between runs
  EXPECT_THROW((void)s->end_epoch(12, {{"val_f1", 0.5}}), InputError);  // monitor missing
}

TEST(Schedule, PlateauMaxModeRespectsMinDelta) {
  auto s = make_schedule(json{{"name", "plateau"}, {"monitor", "val_f1"}, {"patience", 1}, {"min_delta", 0.01}}, 1.0);
  (void)s->end_epoch(0, {{"val_f1", 0.5}});
  EXPECT_DOUBLE_EQ(s->lr(), 1.0);
  (void)s->end_epoch(1, {{"val_f1", 0.505}});  // "auto" -> max; +0.005 is below min_delta
  EXPECT_DOUBLE_EQ(s->lr(), 0.1);
  (void)s->end_epoch(2, {{"val_f1", 0.52}});  // improves by 0.02
  EXPECT_DOUBLE_EQ(s->lr(), 0.1);
}

TEST(EarlyStopping, StopsAfterPatienceEpochsWithoutImprovement) {
  EarlyStopping es(json{{"monitor", "val_f1"}, {"patience", 2}});
  ASSERT_TRUE(es.enabled());
  EXPECT_EQ(es.tracker().mode(), MonitorMode::max);
  const double f1[5] = {0.1, 0.2, 0.2, 0.19, 0.3};
  const bool improved[5] = {true, true, false, false, false};
  const bool stop[5] = {false, false, false, true, true};
  json saved;
  for (int e = 0; e < 4; ++e) {
    const auto d = es.update(e, {{"val_f1", f1[e]}});
    EXPECT_EQ(d.improved, improved[e]) << e;
    EXPECT_EQ(d.stop, stop[e]) << e;
    if (e == 2) saved = json::parse(es.state().dump());
  }
  EXPECT_EQ(es.tracker().best_epoch(), 1);
  EXPECT_DOUBLE_EQ(*es.tracker().best(), 0.2);
  EarlyStopping resumed(json{{"monitor", "val_f1"}, {"patience", 2}});
  resumed.load_state(saved);
  EXPECT_EQ(resumed.wait(), 1);
  EXPECT_TRUE(resumed.update(3, {{"val_f1", 0.19}}).stop);
  // NaN never improves; a disabled instance tracks the best but never stops.
  EarlyStopping off(json(nullptr));
  EXPECT_FALSE(off.enabled());
  EXPECT_EQ(off.tracker().monitor(), "val_loss");
  for (int e = 0; e < 30; ++e) EXPECT_FALSE(off.update(e, {{"val_loss", NAN}}).stop);
  EXPECT_FALSE(off.tracker().best().has_value());
  EXPECT_EQ(off.state()["best"], json(nullptr));
}

TEST(EarlyStopping, ConfigErrorsNameTheKey) {
  try {
    EarlyStopping es(json{{"patiense", 3}});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'patience'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(EarlyStopping(json{{"mode", "maximum"}}), InputError);
  try {
    (void)make_schedule(json{{"name", "cosin"}}, 1.0);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'cosine'"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)make_schedule(json{{"name", "step"}}, 1.0), InputError);  // step_size required
  EXPECT_THROW((void)make_schedule(json{{"name", "plateau"}, {"factor", 1.5}}, 1.0), InputError);
}

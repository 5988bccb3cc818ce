"""Mutation testing: apply realistic mistakes to npctr one at a time and report which the tests miss.

    python tools/mutate.py                 # every mutation against the whole suite (pytest -x)
    python tools/mutate.py --quick         # each against the tests named for it (a minute or two)
    python tools/mutate.py --only dropout_unscaled,gradcheck_loose

Each mutation is a one-place change a person could make: a constant, a formula, a sign, a check
removed. It is applied to a copy of the repository (never to this one), the tests run, and the
mutant is *killed* when they fail. A *surviving* mutant is a blind spot: a change of behaviour no
test notices. Issue 19 found two (Dropout's scaling, the gradient checker's tolerance); both are
killed now. Keep the habit: when a bug is fixed, add the mutation that reintroduces it.

Exit status: 0 when every mutant is killed, 1 when one survives, 2 when a mutation no longer
applies (its text changed: update the list).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: name -> (file, text, replacement, tests run by --quick)
MUTATIONS = {
    "dropout_unscaled": ("npctr/layers/dropout.py",
                         "scaled_mask = keep.astype(self.dtype) / self.dtype.type(1.0 - self.rate)",
                         "scaled_mask = keep.astype(self.dtype)", "tests/test_blind_spots.py"),
    "gradcheck_loose": ("npctr/gradcheck.py", "bool(rel_err <= rtol or abs_err <= atol)",
                        "bool(rel_err <= rtol * 1e4 or abs_err <= atol)", "tests/test_blind_spots.py tests/test_gradcheck.py"),
    "bn_epsilon": ("npctr/conventions.py", "bn_momentum=0.99, bn_momentum_convention=\"keras\", bn_epsilon=1e-3",
                   "bn_momentum=0.99, bn_momentum_convention=\"keras\", bn_epsilon=1e-2",
                   "tests/test_frameworks_din.py tests/test_golden_core.py"),
    "bn_unbiased_moving_variance": ("npctr/conventions.py",
                                    "bn_moving_variance=\"biased\", dice_epsilon=1e-9",
                                    "bn_moving_variance=\"unbiased\", dice_epsilon=1e-9",
                                    "tests/test_frameworks_din.py tests/test_golden_core.py"),
    "dice_epsilon": ("npctr/conventions.py", "dice_epsilon=1e-9", "dice_epsilon=1e-8",
                     "tests/test_frameworks_din.py tests/test_golden_core.py"),
    "bn_backward_no_mean": ("npctr/ops/batch_norm.py", "dx = inv_std * (g - g_mean - x_hat * gx_mean)",
                            "dx = inv_std * (g - x_hat * gx_mean)", "tests/test_gradients_core.py"),
    "softmax_pad_zero": ("npctr/ops/attention.py", "SOFTMAX_PAD = -2.0 ** 32 + 1", "SOFTMAX_PAD = 0.0",
                         "tests/test_golden_asp.py tests/test_deepctr_sequence.py"),
    "max_pool_pad": ("npctr/ops/sequence.py", "MAX_POOL_PAD = 1e9", "MAX_POOL_PAD = 1e3",
                     "tests/test_deepctr_sequence.py tests/test_blind_spots.py"),
    "mean_pool_float64_epsilon": ("npctr/ops/sequence.py",
                                  "return (np.asarray(length).astype(np.float32) + np.float32(MEAN_POOL_EPSILON)).astype(dtype)",
                                  "return np.asarray(length).astype(dtype) + dtype.type(MEAN_POOL_EPSILON)",
                                  "tests/test_deepctr_sequence.py tests/test_gradients_din.py"),
    "attention_difference_order": ("npctr/ops/attention.py",
                                   "return np.concatenate([q, keys, q - keys, q * keys], axis=-1)",
                                   "return np.concatenate([q, keys, keys - q, q * keys], axis=-1)",
                                   "tests/test_gradients_din.py tests/test_golden_core.py tests/test_frameworks_din.py"),
    "prelu_alpha_grad_positive_side": ("npctr/ops/activations.py",
                                       "d_alpha = np.sum(dy * negative, axis=sum_axes, keepdims=True)",
                                       "d_alpha = np.sum(dy * (x - negative), axis=sum_axes, keepdims=True)",
                                       "tests/test_gradients_core.py"),
    "l2_gradient_halved": ("npctr/layers/base.py", "self._grads[key] += (2.0 * c) * self._params[key]",
                           "self._grads[key] += c * self._params[key]",
                           "tests/test_loss_and_gradients.py tests/test_frameworks_din.py"),
    "dropout_same_seed_every_layer": ("npctr/layers/core.py", "seed = None if self.seed is None else self.seed + i",
                                      "seed = self.seed", "tests/test_blind_spots.py"),
    "rmsprop_legacy_epsilon_inside": ("npctr/training/optimizers.py",
                                      "if self.hyper(\"momentum\") > 0:                # the fused kernels",
                                      "if True:  # the fused kernels",
                                      "tests/test_optimizers_extra.py tests/test_frameworks_training.py"),
    "rmsprop_one_minus_rho_float32": ("npctr/training/optimizers.py",
                                      "one_minus_rho = t(1 - self._h(\"rho\", float))",
                                      "one_minus_rho = t(1) - rho", "tests/test_optimizers_extra.py"),
    "adam_bias_correction_exact": ("npctr/training/optimizers.py",
                                   "b1_power = self._h(\"beta_1\", t, \"bias_correction\") ** step",
                                   "b1_power = t(self.hyper(\"beta_1\")) ** step",
                                   "tests/test_frameworks_training.py tests/test_optimizers.py"),
    "keras_bce_no_inner_epsilon": ("npctr/training/losses.py", "inside = eps if convention == \"tf_keras\" else 0",
                                   "inside = 0", "tests/test_frameworks_din.py tests/test_conventions.py"),
    "fit_torch_loss_keras_scale": ("npctr/training/trainer.py",
                                   "loss_sum += total if per_sample else total * (hi - lo)",
                                   "loss_sum += total * (hi - lo)", "tests/test_frameworks_training.py"),
    "loss_and_gradients_no_restore": ("npctr/training/trainer.py",
                                      "        finally:\n            self.restore(snapshot)\n        return total, grads",
                                      "        finally:\n            pass\n        return total, grads",
                                      "tests/test_loss_and_gradients.py"),
    "torch_linear_not_transposed": ("npctr/interop/torch.py", "    if layout == LINEAR and array.ndim == 2:\n        return array.T",
                                    "    if layout == LINEAR and array.ndim == 2:\n        return array",
                                    "tests/test_interop_torch.py tests/test_interop_frameworks.py"),
    "import_profile_unchecked": ("npctr/interop/_names.py", "    if name in allowed or not profile_matters(model):",
                                 "    if True:", "tests/test_interop_profiles.py"),
    "compare_no_round_off_rule": ("npctr/testing.py", "    if scale is not None and own <= rtol * scale and scale > 0:",
                                  "    if scale is not None and own == 0.0 and scale > 0:",
                                  "tests/test_judge.py"),
    "compare_nothing_compared_passes": ("npctr/interop/compare.py", "    if not compared:\n        all_ok = False\n",
                                        "", "tests/test_judge.py"),
    "compare_drops_imaginary": ("npctr/testing.py", "    if a.dtype.kind not in \"biuf\":",
                                "    if a.dtype.kind not in \"biufc\":", "tests/test_judge.py"),
    "golden_no_exact_zeros": ("npctr/interop/golden.py", "            if path in zeros[\"train\" if mode == \"loss\" else mode]:",
                              "            if False:", "tests/test_judge.py"),
    "asp_build_lazy": ("npctr/layers/sequence.py",
                       "            self._layers[\"local_att\"]._build_for(self.dtype, [tuple(query_shape), tuple(keys_shape)])",
                       "            pass", "tests/test_judge.py"),
    "conformance_float32_group_rule_always": ("npctr/conformance/check.py",
                                              "rows, ok, rtol = compare_arrays(arrays, case.expected(), by_group=float32)",
                                              "rows, ok, rtol = compare_arrays(arrays, case.expected(), by_group=True)",
                                              "tests/test_conformance.py"),
    "prediction_bias_ignored": ("npctr/layers/core.py", "            x = x + self._params[\"global_bias\"]\n",
                                "            x = x + 0 * self._params[\"global_bias\"]\n",
                                "tests/test_deepctr_core.py tests/test_gradients_core.py"),
}


def copy_repository(target):
    """The files the tests need: the package, the tests, tools, docs, setup files."""
    ignore = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".pytest_cache", "*.egg-info")
    for name in os.listdir(ROOT):
        if name in (".git",):
            continue
        source = os.path.join(ROOT, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(target, name), ignore=ignore)
        else:
            shutil.copy2(source, os.path.join(target, name))


def run_tests(folder, tests):
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"] + tests
    env = dict(os.environ, PYTHONPATH=folder, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    return done.returncode, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run each mutation's own tests, not the whole suite")
    parser.add_argument("--only", default=None, help="comma-separated mutation names")
    args = parser.parse_args(argv)
    names = list(MUTATIONS) if not args.only else args.only.split(",")
    unknown = [n for n in names if n not in MUTATIONS]
    if unknown:
        parser.error(f"unknown mutations {unknown}; known: {', '.join(MUTATIONS)}")
    survivors, stale = [], []
    with tempfile.TemporaryDirectory(prefix="npctr-mutate-") as folder:
        copy_repository(folder)
        for name in names:
            path, text, replacement, quick_tests = MUTATIONS[name]
            file = os.path.join(folder, path)
            with open(file) as f:
                original = f.read()
            if original.count(text) != 1:
                print(f"STALE    {name}: the text to mutate is not (exactly once) in {path}")
                stale.append(name)
                continue
            with open(file, "w") as f:
                f.write(original.replace(text, replacement))
            start = time.perf_counter()
            try:
                code, last = run_tests(folder, quick_tests.split() if args.quick else ["tests"])
            finally:
                with open(file, "w") as f:
                    f.write(original)
            verdict = "killed" if code != 0 else "SURVIVED"
            if code == 0:
                survivors.append(name)
            print(f"{verdict:8s} {name} ({path}; {time.perf_counter() - start:.0f} s): {last}", flush=True)
    print(f"{len(names) - len(survivors) - len(stale)} killed, {len(survivors)} survived"
          + (f": {', '.join(survivors)}" if survivors else "") + (f"; {len(stale)} stale" if stale else ""))
    return 2 if stale else 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())

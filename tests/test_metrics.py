"""Error tables: RMSE/MAE per config_type and calibration of the predicted stds."""

import numpy as np
import pytest

from gapy.metrics import Comparison, error_table, format_table


def comparison(errors, std, config_types):
    n = len(errors)
    return Comparison("forces", "eV/A", np.zeros(n), np.asarray(errors, float),
                      None if std is None else np.asarray(std, float), np.arange(n),
                      np.asarray(config_types))


def test_calibration_columns_measure_errors_in_units_of_the_std():
    rows = error_table({"forces": comparison([0.05, -0.1, 0.3, 0.02], [0.1, 0.1, 0.1, 0.01],
                                             ["a", "a", "b", "b"])})
    overall, a, b = rows
    assert overall["config_type"] == "all"
    assert overall["z_rms"] == pytest.approx(np.sqrt((0.25 + 1 + 9 + 4) / 4))
    assert overall["within_2std"] == pytest.approx(0.75)  # 3 sigma misses, 2 sigma is in
    assert a["within_2std"] == 1.0 and b["within_2std"] == 0.5
    assert b["rmse"] == pytest.approx(np.sqrt((0.09 + 0.0004) / 2))
    text = format_table(rows)
    assert "RMS(err/std)" in text and "75.0%" in text


def test_no_calibration_without_stds():
    (row,) = error_table({"forces": comparison([0.1], None, ["a"])})[:1]
    assert row["z_rms"] is None and row["within_2std"] is None
    assert "RMS(err/std)" not in format_table([row])


def test_values_without_variance_are_left_out_of_the_calibration():
    rows = error_table({"forces": comparison([1e-9, 0.1, -0.1], [0.0, 0.1, 0.1], ["a", "a", "b"])})
    assert rows[0]["z_rms"] == pytest.approx(1.0) and rows[0]["within_2std"] == 1.0

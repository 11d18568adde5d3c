"""Init times: which frames can start a forecast, and errors that list the valid ones."""

import numpy as np
import pytest

from downpour.core.errors import DownpourError
from downpour.nowcast.inits import check_window, init_index, valid_inits


def test_init_checks_list_the_valid_range(radar):
    da = radar(n=10, gap_at=5)  # 05:00 missing
    ok = valid_inits(da, 3)
    assert [str(t)[11:16] for t in ok] == ["02:00", "03:00", "04:00", "08:00", "09:00"]
    assert init_index(da, "2021-07-01T08:00", 3) == 7
    with pytest.raises(DownpourError, match=r"07:00 does not have 3 complete, consecutive frames"):
        init_index(da, "2021-07-01T07:00", 3)  # window spans the gap
    with pytest.raises(
        DownpourError,
        match=r"01:00 has only 2 frame.* valid init times: "
        r"2021-07-01T02:00 \.\. 2021-07-01T04:00, 2021-07-01T08:00 \.\. ",
    ):
        init_index(da, "2021-07-01T01:00", 3)
    with pytest.raises(DownpourError, match=r"is not a frame of the source"):
        init_index(da, "2021-07-02T00:00", 3)
    with pytest.raises(DownpourError, match=r"not a date-time"):
        init_index(da, "yesterday", 3)


@pytest.mark.parametrize("n_frames", [1, 2, 3, 4])
def test_check_window_agrees_with_valid_inits_and_raises_init_index_error(radar, n_frames):
    da = radar(n=10, gap_at=5).copy()
    da[2] = np.nan  # 02:00 holds no valid cell
    complete = np.ones(9, dtype=bool)
    complete[6] = False  # 07:00 misses a native frame
    da = da.assign_coords(complete=("time", complete))
    times = da["time"].values
    ok = valid_inits(da, n_frames)
    for i, t in enumerate(times):
        if t in ok:
            check_window(da, i, n_frames)  # no error
            continue
        with pytest.raises(DownpourError) as exc:
            check_window(da, i, n_frames)
        with pytest.raises(DownpourError) as ref:
            init_index(da, t, n_frames)
        assert str(exc.value) == str(ref.value)
    with pytest.raises(DownpourError, match="init index 9 is outside the source's 9 frames"):
        check_window(da, 9, 1)

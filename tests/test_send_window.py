"""The window of sends a campaign keeps in flight (workflows/dispatch.py `send_window`): two
seconds of its number's rate, at most what the number's send worker runs at once, shared by
the campaigns sending on the number in proportion to their policy weights."""

from whatsapp_campaigns.workers.send_workers import MAX_CONCURRENT_SENDS
from whatsapp_campaigns.workflows.dispatch import MIN_WINDOW, send_window, window_shared_by


def _window(rate: int, weight: float, weights_on_sender: float, slowed_down: bool = False) -> int:
    shared_by = window_shared_by(weight, weights_on_sender=weights_on_sender, campaigns_on_sender=1)
    return send_window(rate, shared_by=shared_by, slowed_down=slowed_down)


def test_a_campaign_alone_on_its_number_keeps_two_seconds_of_the_rate_in_flight() -> None:
    assert send_window(80, shared_by=1, slowed_down=False) == 160


def test_a_campaign_alone_on_a_fast_number_keeps_what_the_send_worker_runs_at_once() -> None:
    assert send_window(1000, shared_by=1, slowed_down=False) == MAX_CONCURRENT_SENDS


def test_campaigns_on_one_number_share_its_window_evenly() -> None:
    assert send_window(1000, shared_by=4, slowed_down=False) == 125


def test_campaigns_of_equal_weight_share_the_window_as_many_campaigns_do() -> None:
    for campaigns in range(1, 51):
        by_weight = _window(1000, 1.0, float(campaigns))
        assert by_weight == send_window(1000, shared_by=campaigns, slowed_down=False)


def test_campaigns_on_one_number_share_its_window_by_their_weights() -> None:
    # Weights 3 and 1 on a 20 msg/s number (a window of 40): 30 and 10.
    assert (_window(20, 3.0, 4.0), _window(20, 1.0, 4.0)) == (30, 10)


def test_fractional_weights_share_the_window_in_proportion() -> None:
    # 0.5 and 1.5 on a 1,000 msg/s number: a quarter and three quarters of 500.
    assert [_window(1000, w, 2.0) for w in (0.5, 1.5)] == [125, 375]


def test_the_shared_windows_together_stay_within_what_the_send_worker_runs_at_once() -> None:
    for campaigns in range(1, 51):
        weights = [1.0 + (i % 3) for i in range(campaigns)]  # 1, 2, 3, 1, 2, 3, ...
        windows = [_window(1000, w, sum(weights)) for w in weights]
        if min(windows) > MIN_WINDOW:
            assert sum(windows) <= MAX_CONCURRENT_SENDS


def test_a_campaign_keeps_a_minimum_window_however_many_share_its_number() -> None:
    assert send_window(80, shared_by=100, slowed_down=False) == MIN_WINDOW


def test_without_the_weights_on_the_number_the_window_is_shared_by_the_campaigns_on_it() -> None:
    shared_by = window_shared_by(3.0, weights_on_sender=None, campaigns_on_sender=4)
    assert send_window(1000, shared_by=shared_by, slowed_down=False) == 125


def test_after_a_throughput_limit_a_campaign_keeps_a_quarter_of_its_share() -> None:
    assert send_window(1000, shared_by=2, slowed_down=True) == 62

"""SVDD-MC: the Monte Carlo value-net regression learns E[r(x0) | x_t] on the Gaussian mixture."""

import torch

import svdd
from svdd.training import collect_rollouts, train_value_net


class ValueMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.f = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.SiLU(), torch.nn.Linear(64, 64), torch.nn.SiLU(),
                                     torch.nn.Linear(64, 1))

    def forward(self, x, t):
        return self.f(torch.cat([x, t.view(-1, 1)], 1)).squeeze(-1)


def test_value_net_learns_and_guides(gmm):
    model, reward, _ = gmm
    roll = collect_rollouts(model, reward, 1500, seed=0)
    assert roll.states.shape == (model.num_steps, 1500, 2) and roll.rewards.shape == (1500,)
    assert torch.equal(roll.states[-1].sum(1), roll.rewards)  # the last state is the clean sample
    net = ValueMLP()
    rec = train_value_net(net, roll, epochs=3, batch_size=512, lr=3e-3, seed=0)
    assert rec.losses[-1] < rec.losses[0]
    corr = rec.val_corr
    # near the end the value is almost the reward itself; at pure noise E[r | x_T] carries little signal (a high
    # correlation there would mean the states were not the noisy ones of their level)
    assert corr[min(corr)] > 0.95
    assert max(corr) > 0.9 and corr[max(corr)] < 0.5, corr
    guided = svdd.sample(model, reward, "svdd", num_samples=64, M=8, value=svdd.LearnedValue(net))
    base = svdd.sample(model, reward, "pretrained", num_samples=64)
    assert guided.rewards.median() > base.rewards.median() + 1.0
    assert guided.cost.reward_evals == 64  # only the final rewards: SVDD-MC needs no reward call per candidate

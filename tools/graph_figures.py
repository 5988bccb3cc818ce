"""Computational-graph figures of the derivations in docs/ (drawn by tools/make_figures.py).

Each figure is a small graph: boxes are arrays, arrows are the functions between them, coloured
by the path a gradient takes back; where several arrows leave one box, its gradient is the sum of
what comes back along them. Needs matplotlib; deterministic (no randomness).

- ``bn_graph.png``: BatchNormalization, one feature: x_i reaches x-hat_i directly, through the mean
  and through the variance (docs/batch_normalization.md, step 2);
- ``lau_graph.png``: the LocalActivationUnit: q repeated over T, each position's
  [q, k, q - k, q * k] (docs/local_activation_unit.md);
- ``din_tables.png``: DIN's shared embedding tables and their fan-out (docs/din.md, section 4).
"""
from matplotlib.patches import FancyArrowPatch

BLUE, ORANGE, GREEN, RED, GREY, PURPLE = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f", "#9467bd"


class Graph:
    """Boxes at data coordinates and arrows between them, on one matplotlib Axes."""

    def __init__(self, ax, fontsize=11):
        self.ax, self.fontsize, self.boxes = ax, fontsize, {}
        ax.set_axis_off()

    def node(self, name, x, y, label, color="black", fill="white", size=None):
        text = self.ax.text(x, y, label, ha="center", va="center", fontsize=size or self.fontsize, zorder=3,
                            color=color, bbox=dict(boxstyle="round,pad=0.35", fc=fill, ec=color, lw=1.4))
        self.boxes[name] = text
        return text

    def edge(self, a, b, label=None, color="black", style="-", rad=0.0, label_pos=0.5, label_offset=(0, 0),
             size=None, lw=1.4):
        arrow = FancyArrowPatch(posA=self.boxes[a].get_position(), posB=self.boxes[b].get_position(),
                                patchA=self.boxes[a].get_bbox_patch(), patchB=self.boxes[b].get_bbox_patch(),
                                arrowstyle="-|>", mutation_scale=13, color=color, lw=lw, linestyle=style,
                                connectionstyle=f"arc3,rad={rad}", zorder=2, shrinkA=2, shrinkB=2)
        self.ax.add_patch(arrow)
        if label:
            (xa, ya), (xb, yb) = self.boxes[a].get_position(), self.boxes[b].get_position()
            x = xa + (xb - xa) * label_pos + label_offset[0]
            y = ya + (yb - ya) * label_pos + label_offset[1]
            self.ax.text(x, y, label, ha="center", va="center", fontsize=size or self.fontsize - 2, color=color,
                         zorder=4, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))

    def note(self, x, y, text, color="black", size=None, ha="left", **kwargs):
        self.ax.text(x, y, text, ha=ha, va="center", fontsize=size or self.fontsize - 1, color=color, **kwargs)


def bn_graph(plt):
    """BatchNormalization's graph for one feature: the three paths from x_i to x-hat_i."""
    fig, ax = plt.subplots(figsize=(9.6, 4.6), dpi=100)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 5.4)
    g = Graph(ax)
    g.node("xi", 0.8, 2.7, r"$x_i$", size=14)
    g.node("mu", 3.4, 4.3, r"$\mu = \frac{1}{N}\sum_j x_j$", color=ORANGE)
    g.node("var", 3.4, 1.1, r"$\sigma^2 = \frac{1}{N}\sum_j (x_j-\mu)^2$", color=GREEN)
    g.node("xhi", 6.4, 2.7, r"$\hat x_i = (x_i-\mu)/\hat\sigma$")
    g.node("xhj", 6.4, 4.6, r"$\hat x_j,\ j \neq i$", color=GREY)
    g.node("yi", 8.2, 2.7, r"$y_i = \gamma\hat x_i + \beta$")
    g.node("L", 9.5, 3.65, r"$L$", size=14)
    g.edge("xi", "xhi", r"$\partial\hat x_i/\partial x_i = 1/\hat\sigma$", color=BLUE, lw=2.2, label_pos=0.72,
           label_offset=(0, 0.22))
    g.edge("xi", "mu", r"$1/N$", color=ORANGE, lw=2.2)
    g.edge("xi", "var", r"$2(x_i-\mu)/N$", color=GREEN, lw=2.2)
    g.edge("mu", "xhi", r"$-1/\hat\sigma$", color=ORANGE, lw=2.2)
    g.edge("var", "xhi", r"$-\hat x_i/(2\hat\sigma^2)$", color=GREEN, lw=2.2)
    g.edge("mu", "var", r"$\partial\sigma^2/\partial\mu = 0$", color=GREY, style="--", rad=0.25, label_offset=(-0.75, 0.75),
           size=8)
    g.edge("mu", "xhj", color=GREY, style="--")
    g.edge("var", "xhj", color=GREY, style="--", rad=-0.35)
    g.edge("xhi", "yi")
    g.edge("yi", "L")
    g.edge("xhj", "L", r"$y_j$", color=GREY, style="--")
    g.note(0.2, 0.25, r"$dx_i$ = blue + orange + green $= \frac{1}{\hat\sigma}\,(g_i - \bar g - \hat x_i\,\overline{g\hat x})$,"
                      r"  $g = \partial L/\partial\hat x = \gamma\,dy$", size=11)
    ax.set_title("BatchNormalization (training mode), one feature: three paths from $x_i$ to the loss", fontsize=12)
    fig.tight_layout()
    return fig


def lau_graph(plt, T=3):
    """The LocalActivationUnit: q copied to T positions, four blocks per position, gradients adding up."""
    fig, ax = plt.subplots(figsize=(10.4, 5.8), dpi=100)
    ax.set_xlim(0, 11)
    ax.set_ylim(-0.5, 2.3 * T + 0.5)
    g = Graph(ax, fontsize=10)
    top = 2.3 * T - 0.9
    g.node("q", 0.7, top - 2.3 * (T - 1) / 2, r"$q_b$" + "\n(1, E)", color=RED, size=12)
    for t in range(T):
        y = top - 2.3 * t
        g.node(f"Q{t}", 2.3, y + 0.75, r"$Q_{bt} = q_b$", color=RED)
        g.node(f"k{t}", 2.3, y - 0.75, r"$k_{bt}$", color=BLUE)
        g.node(f"u1{t}", 4.6, y, r"$Q$", color=RED, size=9)
        g.node(f"u2{t}", 5.35, y, r"$k$", color=BLUE, size=9)
        g.node(f"u3{t}", 6.2, y, r"$Q-k$", color=PURPLE, size=9)
        g.node(f"u4{t}", 7.15, y, r"$Q\odot k$", color=PURPLE, size=9)
        g.node(f"s{t}", 9.3, y, r"$s_{bt} = \mathrm{DNN}(u)\,W_s + b_s$", size=9)
        g.note(9.3, y - 0.55, f"position t = {t + 1}" if t < T - 1 else "position t = T", color=GREY, size=9,
               ha="center")
        g.edge("q", f"Q{t}", color=RED, lw=1.8)
        g.edge(f"Q{t}", f"u1{t}", color=RED)
        g.edge(f"Q{t}", f"u3{t}", color=RED, rad=-0.08)
        g.edge(f"Q{t}", f"u4{t}", color=RED, rad=-0.12)
        g.edge(f"k{t}", f"u2{t}", color=BLUE)
        g.edge(f"k{t}", f"u3{t}", r"$-1$", color=BLUE, rad=0.08, label_pos=0.8, label_offset=(0, -0.22), size=8)
        g.edge(f"k{t}", f"u4{t}", color=BLUE, rad=0.12)
        g.edge(f"u4{t}", f"s{t}")
    g.note(0.1, -0.3, r"back: $dQ_{bt} = du_1 + du_3 + du_4\odot k_{bt}$,  $dk_{bt} = du_2 - du_3 + du_4\odot Q_{bt}$,"
                      r"  $dq_b = \sum_{t=1}^{T} dQ_{bt}$: three uses per position, then $T$ copies, all added",
           size=10)
    ax.set_title("LocalActivationUnit: the query repeated over $T$, each copy used three times\n"
                 r"in $u_{bt} = [Q,\ k,\ Q-k,\ Q\odot k]$, (B, T, 4E)", fontsize=12)
    fig.tight_layout()
    return fig


def din_tables(plt):
    """DIN's embedding tables: each shared by the candidate and the history, the candidate used twice."""
    fig, ax = plt.subplots(figsize=(10.4, 5.2), dpi=100)
    ax.set_xlim(0, 11)
    ax.set_ylim(-0.4, 5.2)
    g = Graph(ax, fontsize=10)
    g.node("Wi", 0.9, 3.8, "table\nitem_id\n(V, 8)", color=RED)
    g.node("Wc", 0.9, 1.4, "table\ncate_id\n(V, 4)", color=BLUE)
    g.node("ei", 3.1, 4.5, r"$e_{\mathrm{item}}$ (B, 1, 8)", color=RED)
    g.node("ehi", 3.1, 3.1, r"$e_{\mathrm{hist\ item}}$ (B, T, 8)", color=RED)
    g.node("ec", 3.1, 2.1, r"$e_{\mathrm{cate}}$ (B, 1, 4)", color=BLUE)
    g.node("ehc", 3.1, 0.7, r"$e_{\mathrm{hist\ cate}}$ (B, T, 4)", color=BLUE)
    g.node("q", 5.6, 3.7, r"query $q$ (B, 1, 12)", color=PURPLE)
    g.node("K", 5.6, 1.5, r"keys $K$ (B, T, 12)", color=PURPLE)
    g.node("att", 7.5, 2.6, "attention\npooling", color=PURPLE)
    g.node("vU", 8.2, 4.5, r"$v_U$ (B, 1, 12)", color=PURPLE)
    g.node("u", 9.9, 3.4, "DNN input $u$\n(+ user, gender,\n pay_score)")
    g.node("y", 9.9, 1.2, r"DNN $\to$ $\hat y$")
    for a, b, c in (("Wi", "ei", RED), ("Wi", "ehi", RED), ("Wc", "ec", BLUE), ("Wc", "ehc", BLUE)):
        g.edge(a, b, color=c, lw=1.8)
    g.edge("ei", "q", color=RED)
    g.edge("ec", "q", color=BLUE)
    g.edge("ehi", "K", color=RED)
    g.edge("ehc", "K", color=BLUE)
    g.edge("ei", "u", color=RED, rad=-0.18, style="--")
    g.edge("ec", "u", color=BLUE, rad=-0.32, style="--")
    g.edge("q", "att", color=PURPLE)
    g.edge("K", "att", color=PURPLE)
    g.edge("att", "vU", color=PURPLE)
    g.edge("vU", "u", color=PURPLE)
    g.edge("u", "y")
    g.note(0.1, 0.05, "back: each table's gradient is one RowGrad summing its three uses: the candidate's row\n"
                      "(from $q$ and from $u$, added) and the history's rows (through the weighted sum and the scores)",
           size=10)
    ax.set_title("DIN: one embedding table per embedding_name,\nshared by the candidate and the history", fontsize=12)
    fig.tight_layout()
    return fig


FIGURES = {"bn_graph.png": bn_graph, "lau_graph.png": lau_graph, "din_tables.png": din_tables}


def write_all(plt, out):
    """Draw every graph figure into the directory ``out``; returns the paths written."""
    paths = []
    for name, draw in FIGURES.items():
        fig = draw(plt)
        fig.savefig(out / name)
        plt.close(fig)
        paths.append(out / name)
    return paths

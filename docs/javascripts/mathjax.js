// MathJax 3 for both kinds of page: the API pages (pymdownx.arithmatex writes \( \) and \[ \])
// and the executed tutorials (mkdocs-jupyter keeps the notebooks' $ and $$).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  }
};

document$.subscribe(() => {
  MathJax.startup.output.clearCache()
  MathJax.typesetClear()
  MathJax.texReset()
  MathJax.typesetPromise()
})

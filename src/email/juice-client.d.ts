/** juice's client build: the same inliner without the parts that read files or fetch URLs. */
declare module 'juice/client' {
  import juice = require('juice');
  export = juice;
}

import { selectTopK } from '../src/tasks';
const D=5000,N=512,K=100; const Q=new Float32Array(D*N); let x=2; for(let i=0;i<Q.length;i++){x^=x<<13;x>>>=0;x^=x>>>17;x^=x<<5;x>>>=0;Q[i]=2*(x/4294967296-0.5);}
const values=new Float32Array(D), order=new Int32Array(D);
for(let rep=0;rep<3;rep++){let t=performance.now(); let gather=0;
for(let n=0;n<N;n++){const t0=performance.now(); for(let i=0;i<D;i++)values[i]=Q[i*N+n]; gather+=performance.now()-t0; selectTopK(values,order,K);} console.log('topk ms',performance.now()-t,'gather',gather);}

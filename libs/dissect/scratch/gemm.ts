import * as ort from 'onnxruntime-node';
import { buildOnnxModel } from '../src/onnx-model';
async function main(){
  const D=5000,N=512,S=2560;
  const A=new Float32Array(D*N).map(()=>Math.random()), At=new Float32Array(N*D).map(()=>Math.random()), B=new Float32Array(D*S).map(()=>Math.random());
  const g1=buildOnnxModel({name:'g',inputs:[{name:'A',shape:['D','N']},{name:'B',shape:['D','S']}],outputs:[{name:'Y',shape:['N','S']}],nodes:[{op:'Gemm',inputs:['A','B'],outputs:['Y'],attributes:[{name:'transA',i:1}]}]});
  const g2=buildOnnxModel({name:'m',inputs:[{name:'A',shape:['N','D']},{name:'B',shape:['D','S']}],outputs:[{name:'Y',shape:['N','S']}],nodes:[{op:'MatMul',inputs:['A','B'],outputs:['Y']}]});
  for (const threads of [1,2]){
  const s1=await ort.InferenceSession.create(g1,{intraOpNumThreads:threads}); const s2=await ort.InferenceSession.create(g2,{intraOpNumThreads:threads});
  for(let r=0;r<3;r++){
    let t=performance.now(); await s1.run({A:new ort.Tensor('float32',A,[D,N]),B:new ort.Tensor('float32',B,[D,S])}); const a=performance.now()-t;
    t=performance.now(); await s2.run({A:new ort.Tensor('float32',At,[N,D]),B:new ort.Tensor('float32',B,[D,S])}); const b=performance.now()-t;
    console.log('threads',threads,'gemm transA ms',a.toFixed(0),'matmul ms',b.toFixed(0),'GFLOPS',(2*N*D*S/b/1e6).toFixed(1));
  }}
}
main();
